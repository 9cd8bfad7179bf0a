"""Curate a snapshot with DuckDB SQL into one clean Parquet table (rules/curate.smk)."""
