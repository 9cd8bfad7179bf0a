"""BioTrove-Train, the benchmarks, their overlap checks and Tables 3 and 7 (rules/subsets.smk)."""
