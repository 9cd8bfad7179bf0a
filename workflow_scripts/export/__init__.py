"""The benchmarks and subsets in the field's formats: clip_benchmark and the iNaturalist 2021
competition (rules/export.smk)."""
