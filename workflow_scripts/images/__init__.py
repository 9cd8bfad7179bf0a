"""Images: downloads with img2dataset, duplicate images, webdataset shards (rules/images.smk)."""
