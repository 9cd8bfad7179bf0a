"""What changed between two monthly snapshots, in the data and in the results (rules/diff.smk)."""
