"""The embedded default (rules/sample.smk): a generated two-month sample of the bucket."""
