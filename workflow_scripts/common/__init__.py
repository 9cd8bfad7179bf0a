"""What the stages share (a stage imports only this package and itself: .importlinter):
configuration and its schema, where outputs go (contracts), provenance, the command line, files,
DuckDB, tables, figures, the iNaturalist format and raw tables, the taxonomy (ranks, categories),
drop reasons, captions, the overlap checks, benchmarks and prompts, image tars, model configs."""
