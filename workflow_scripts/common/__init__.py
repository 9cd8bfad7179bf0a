"""What the stages share: configuration and its schema, where outputs go (contracts), provenance,
the command line, files, DuckDB, tables, figures, captions, the iNaturalist format, model configs."""
