"""BioTrove-Train, the benchmarks, their leak checks and Tables 3 and 7 (rules/subsets.smk)."""
