"""Zero-shot evaluation, conformal sets and the paper's Tables 5, 8 and 9 (rules/evaluate.smk)."""
