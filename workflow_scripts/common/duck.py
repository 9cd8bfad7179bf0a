"""DuckDB helpers shared by the stages: SQL literals, .sql files and deterministic Parquet."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb


def quote(text: str) -> str:
    """A SQL string literal (paths and names put into statements)."""
    return "'" + str(text).replace("'", "''") + "'"


def query(con: duckdb.DuckDBPyConnection, sql: str):
    """A query's rows as a pandas DataFrame."""
    return con.execute(sql).df()


def run_sql(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Run a .sql file statement by statement (settings reach it as DuckDB variables)."""
    text = re.sub(r"--[^\n]*", "", path.read_text())
    for statement in text.split(";"):
        if statement.strip():
            con.execute(statement)


def write_parquet(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    """A query's rows as Parquet with fixed settings (with an ORDER BY on a total key, the same
    bytes on every run and for any number of threads), via a temporary name: `path` is whole or
    absent."""
    temporary = path.with_name(path.name + ".tmp")
    con.execute(
        f"COPY ({sql}) TO {quote(temporary)} (FORMAT parquet, COMPRESSION zstd, "
        f"ROW_GROUP_SIZE 122880)"
    )
    temporary.replace(path)
