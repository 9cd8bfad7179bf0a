"""BioTrove from iNaturalist Open Data: one subpackage (or module) per pipeline stage, run as
`python -m workflow_scripts.<stage>` by rules/<stage>.smk, and the helpers they share (common/)."""
