"""DuckDB helpers shared by the stages: SQL literals and the .sql files in workflow_scripts/sql/."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

SQL = Path(__file__).parent / "sql"


def quote(text: str) -> str:
    """A SQL string literal (paths and names put into statements)."""
    return "'" + str(text).replace("'", "''") + "'"


def run_sql(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Run a .sql file statement by statement (settings reach it as DuckDB variables)."""
    text = re.sub(r"--[^\n]*", "", (SQL / name).read_text())
    for statement in text.split(";"):
        if statement.strip():
            con.execute(statement)
