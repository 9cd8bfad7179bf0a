"""Images: downloads with img2dataset, the image overlap check, webdataset shards
(rules/images.smk)."""
