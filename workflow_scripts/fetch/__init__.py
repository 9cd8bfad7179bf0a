"""Fetch a monthly snapshot from the bucket, verified and archived (rules/fetch.smk)."""
