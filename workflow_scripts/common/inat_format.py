"""The iNaturalist Open Data file format: table schemas and a streaming conformance check.

One source of truth for what the exporter writes
(https://github.com/inaturalist/inaturalist-open-data): rows are ``"\\t".join(fields) + "\\n"``
with no quoting, empty = null, a header line first.
The sample generator writes with these definitions, fetch verifies downloads with them, and
curation reads with them.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO

TABLES = ("photos", "observations", "taxa", "observers")
REQUIRED_TABLES = ("photos", "observations", "taxa")

# Current schema (anomaly_score added to observations in 2024-11) and the one before it.
COLUMNS = {
    "observations": (
        "observation_uuid",
        "observer_id",
        "latitude",
        "longitude",
        "positional_accuracy",
        "taxon_id",
        "quality_grade",
        "observed_on",
        "anomaly_score",
    ),
    "photos": (
        "photo_uuid",
        "photo_id",
        "observation_uuid",
        "observer_id",
        "extension",
        "license",
        "width",
        "height",
        "position",
    ),
    "taxa": ("taxon_id", "ancestry", "rank_level", "rank", "name", "active"),
    "observers": ("observer_id", "login", "name"),
}
OPTIONAL_TRAILING = {"observations": ("anomaly_score",)}

LICENSES = ("CC0", "CC-BY", "CC-BY-NC", "CC-BY-SA", "CC-BY-ND", "CC-BY-NC-SA", "CC-BY-NC-ND", "PD")
LICENSE_URLS = {
    "CC0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "PD": "https://creativecommons.org/publicdomain/mark/1.0/",
    **{
        code: f"https://creativecommons.org/licenses/{code[3:].lower()}/4.0/"
        for code in LICENSES[1:-1]
    },
}
QUALITY_GRADES = ("research", "needs_id", "casual")

RANK_LEVELS = {
    "root": 100,
    "stateofmatter": 100,
    "kingdom": 70,
    "phylum": 60,
    "subphylum": 57,
    "superclass": 53,
    "class": 50,
    "subclass": 47,
    "infraclass": 45,
    "subterclass": 44,
    "superorder": 43,
    "order": 40,
    "suborder": 37,
    "infraorder": 35,
    "parvorder": 34.5,
    "zoosection": 34,
    "zoosubsection": 33.5,
    "superfamily": 33,
    "epifamily": 32,
    "family": 30,
    "subfamily": 27,
    "supertribe": 26,
    "tribe": 25,
    "subtribe": 24,
    "genus": 20,
    "genushybrid": 20,
    "subgenus": 15,
    "section": 13,
    "subsection": 12,
    "complex": 11,
    "species": 10,
    "hybrid": 10,
    "subspecies": 5,
    "variety": 5,
    "form": 5,
    "infrahybrid": 5,
}

EXTENSIONS = (
    "jpg",
    "jpeg",
    "png",
    "gif",
)  # kept in their uploaded case (JPG occurs): any case allowed
MAX_NAME_LENGTH = 500  # real scientific names are under 100 characters

# The syntax of each typed column as the exporter writes it: ASCII digits, lower-case hyphenated
# UUIDs, ISO dates, true/false. Curation reads every column as text and applies these rules before
# casting, because DuckDB's casts are looser (2.5 -> 3, +7, 1e3, nan, 2020-5-1, yes, upper-case or
# braced UUIDs): a value is refused, never rounded or normalised.
_INT = r"-?[0-9]{1,18}"  # fits BIGINT
_NUM = r"-?[0-9]{1,18}(\.[0-9]+)?([eE][-+]?[0-9]{1,2})?"  # finite: no nan, inf or overflow
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
SYNTAX = {
    "observation_uuid": ("pattern", _UUID),
    "photo_uuid": ("pattern", _UUID),
    **{
        column: ("pattern", _INT)
        for column in (
            "observer_id",
            "photo_id",
            "taxon_id",
            "width",
            "height",
            "position",
            "positional_accuracy",
        )
    },
    **{
        column: ("pattern", _NUM)
        for column in ("latitude", "longitude", "anomaly_score", "rank_level")
    },
    "observed_on": ("date", None),
    "active": ("one_of", ("true", "false")),
}

# The rules on a well-typed value. With SYNTAX, one definition for both checkers: the format checker
# applies them in Python (value_problem), curation in SQL (value_problem_sql). A rule is (kind,
# argument): "pattern" (a regex the whole value matches; ASCII only, as Python's and DuckDB's case
# rules differ beyond it), "date" (YYYY-MM-DD, a real day from year 1), "one_of", "range" (inclusive
# bounds, None for none) or "max_length". Ancestry's links between taxa are curation's
# (curate/ancestry.sql): resolvable, acyclic, never the taxon itself.
INT32_MAX = 2**31 - 1  # width, height and position are stored as INTEGER
VALUE_RULES = {
    "photo_id": ("range", (1, None)),
    "taxon_id": ("range", (1, None)),
    "observer_id": ("range", (1, None)),
    "width": ("range", (0, INT32_MAX)),
    "height": ("range", (0, INT32_MAX)),
    "position": ("range", (0, INT32_MAX)),
    "positional_accuracy": ("range", (0, None)),
    "latitude": ("range", (-90, 90)),
    "longitude": ("range", (-180, 180)),
    "rank_level": ("range", (0, 100)),
    "ancestry": ("pattern", r"[0-9]{1,18}(/[0-9]{1,18})*"),
    "extension": (
        "pattern",
        "|".join("".join(f"[{c}{c.upper()}]" for c in ext) for ext in EXTENSIONS),
    ),
    "license": ("one_of", LICENSES),
    "quality_grade": ("one_of", QUALITY_GRADES),
    "rank": ("one_of", tuple(RANK_LEVELS)),
    "name": ("max_length", MAX_NAME_LENGTH),
}
SHOWN = 60  # characters of a bad value an error message shows


def _is_day(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _holds(rule: tuple, value: str) -> bool:
    kind, argument = rule
    if kind == "pattern":
        return re.fullmatch(argument, value) is not None
    if kind == "date":
        return re.fullmatch(_DATE, value) is not None and _is_day(value)
    if kind == "one_of":
        return value in argument
    if kind == "range":
        low, high = argument
        return (low is None or float(value) >= low) and (high is None or float(value) <= high)
    return len(value) <= argument  # max_length


def _sql_breaks(rule: tuple, column: str) -> str:
    """SQL that is true when the column's text (VARCHAR, not NULL) breaks the rule."""
    kind, argument = rule
    quoted = f'"{column}"'
    if kind == "pattern":
        return f"NOT regexp_full_match({quoted}, '{argument}')"
    if kind == "date":
        return (
            f"NOT regexp_full_match({quoted}, '{_DATE}') OR TRY_CAST({quoted} AS DATE) IS NULL "
            f"OR TRY_CAST({quoted} AS DATE) < DATE '0001-01-01'"
        )  # DuckDB reads year 0000 as 1 BC
    if kind == "one_of":
        return f"{quoted} NOT IN ({', '.join(repr(v) for v in argument)})"
    if kind == "range":  # reached with a number's syntax: a failed cast is a syntax problem already
        low, high = argument
        number = f"TRY_CAST({quoted} AS DOUBLE)"
        return " OR ".join(
            [f"{number} < {low}"] * (low is not None) + [f"{number} > {high}"] * (high is not None)
        )
    return f"length({quoted}) > {argument}"  # max_length


def _rules(column: str) -> list[tuple]:
    return [rules[column] for rules in (SYNTAX, VALUE_RULES) if column in rules]


def _message(column: str, value: str) -> str:
    shown = f"{value[:SHOWN]}... ({len(value)} characters)" if len(value) > SHOWN else value
    return f"{column}={shown!r} is not a valid {column}"


def value_problem(column: str, value: str) -> str | None:
    """Why `value` (as the file has it) is not valid for `column`, or None. Empty means null."""
    if value == "" or all(_holds(rule, value) for rule in _rules(column)):
        return None
    return _message(column, value)


def value_problem_sql(columns: Iterable[str]) -> str:
    """A SQL expression over rows of text (VARCHAR, NULL for empty) with these columns: for a row,
    the message value_problem gives for its first column whose value breaks a rule, else NULL."""
    cases = []
    for column in columns:
        if rules := _rules(column):
            text = f'"{column}"'
            shown = (
                f"CASE WHEN length({text}) > {SHOWN} THEN left({text}, {SHOWN}) || '... (' || "
                f"length({text}) || ' characters)' ELSE {text} END"
            )
            breaks = " OR ".join(f"({_sql_breaks(rule, column)})" for rule in rules)
            cases.append(
                f"WHEN {text} IS NOT NULL AND ({breaks}) "
                f"THEN '{column}=''' || {shown} || ''' is not a valid {column}'"
            )
    return f"CASE {' '.join(cases)} END" if cases else "NULL"


def write_row(out: IO[str], fields: Iterable[object]) -> None:
    """Write one row as the exporter does: TAB-joined, no quoting, None as empty."""
    out.write("\t".join("" if f is None else str(f) for f in fields) + "\n")


@dataclass
class TableCheck:
    """Outcome of checking one table file; `errors` empty means it conforms."""

    path: str
    table: str
    columns: tuple[str, ...] = ()
    rows: int = 0
    extra_field_rows: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "table": self.table,
            "columns": list(self.columns),
            "rows": self.rows,
            "extra_field_rows": self.extra_field_rows,
            "errors": self.errors,
        }


def table_name(path: str | Path) -> str:
    """'photos' for photos.csv, photos.csv.gz or .../photos.csv inside a bundle."""
    name = Path(str(path)).name
    for suffix in (".gz", ".csv"):
        name = name.removesuffix(suffix)
    if name not in TABLES:
        raise ValueError(f"{path}: not an iNaturalist Open Data table (expected one of {TABLES})")
    return name


def header_form_problem(header: str) -> str | None:
    """What is wrong with a header line's form (not its columns), with what to do; None if nothing.
    Spreadsheets and editors re-save tables this way, and the columns then look 'missing'."""
    if header.startswith("\ufeff"):
        return (
            "line 1 starts with a UTF-8 byte-order mark, which the exporter never writes (saved by "
            "a text editor or spreadsheet?): remove it, or fetch the file again"
        )
    if header.rstrip("\n").endswith("\r"):
        return (
            "Windows (CRLF) line endings; the exporter writes LF: convert them (dos2unix), or "
            "fetch the file again"
        )
    if "\t" not in header and ("," in header or ";" in header):
        return (
            f"line 1 is {'comma' if ',' in header else 'semicolon'}-separated; the exporter "
            f"separates fields with tabs: fetch the file again rather than a re-saved copy"
        )
    return None


def check_header(table: str, header: str, where: str) -> tuple[str, ...]:
    """The header's columns if they are the table's current or previous schema; else ValueError."""
    if problem := header_form_problem(header):
        raise ValueError(f"{where}: {problem}")
    columns = tuple(header.rstrip("\n").split("\t"))
    expected = COLUMNS[table]
    older = expected[: len(expected) - len(OPTIONAL_TRAILING.get(table, ()))]
    if columns not in (expected, older):
        missing = [c for c in older if c not in columns]
        detail = (
            f"missing columns {missing}" if missing else f"unexpected column order {list(columns)}"
        )
        raise ValueError(f"{where}: line 1: header is not the {table} schema: {detail}")
    return columns


def check_lines(table: str, lines: Iterator[str], where: str, max_errors: int = 20) -> TableCheck:
    """Check a table's lines (header first) against the format rules, streaming."""
    result = TableCheck(path=where, table=table)
    header = next(lines, None)
    if header is None:
        result.errors.append(f"{where}: empty file (no header line)")
        return result
    try:
        result.columns = check_header(table, header, where)
    except ValueError as exc:
        result.errors.append(str(exc))
        return result
    width = len(result.columns)
    for line_no, line in enumerate(lines, start=2):
        if not line.endswith("\n"):
            result.errors.append(f"{where}: line {line_no}: no line terminator (truncated file?)")
        fields = line.rstrip("\n").split("\t")
        result.rows += 1
        if len(fields) == width + 1:
            result.extra_field_rows += 1  # seen in real extracts: read by the first columns
        elif len(fields) != width:
            result.errors.append(f"{where}: line {line_no}: {len(fields)} fields, expected {width}")
            continue
        for column, value in zip(result.columns, fields):
            problem = value_problem(column, value)
            if problem:
                result.errors.append(f"{where}: line {line_no}: {problem}")
        if len(result.errors) >= max_errors:
            result.errors.append(f"{where}: stopped after {max_errors} errors")
            break
    return result


def open_text(path: str | Path) -> IO[str]:
    """Open a .csv or .csv.gz table as UTF-8 text that keeps line terminators as written."""
    raw = gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def check_table_file(path: str | Path) -> TableCheck:
    table = table_name(path)
    try:
        with open_text(path) as text:
            return check_lines(table, iter(text), str(path))
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        return TableCheck(path=str(path), table=table, errors=[f"{path}: unreadable: {exc}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m workflow_scripts.common.inat_format",
        description=(
            "Check iNaturalist Open Data table files (.csv or .csv.gz) against the format rules."
        ),
    )
    parser.add_argument(
        "files", nargs="+", type=Path, help="photos/observations/taxa/observers tables"
    )
    args = parser.parse_args(argv)
    results = [check_table_file(path) for path in args.files]
    json.dump([r.as_dict() for r in results], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
