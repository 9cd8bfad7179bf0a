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
from datetime import date, timedelta
from pathlib import Path
from typing import IO

from workflow_scripts.common.config import settings

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
# The syntax of each typed column as the exporter writes it: ASCII digits, lower-case hyphenated
# UUIDs, ISO dates, true/false. Curation reads every column as text and applies these rules before
# casting, because DuckDB's casts are looser (2.5 -> 3, +7, 1e3, nan, 2020-5-1, yes, upper-case or
# braced UUIDs): a value is refused, never rounded or normalised.
# A rule is (kind, argument, what it asks: error messages say it).
_INT = ("pattern", r"-?[0-9]{1,18}", "an integer in ASCII digits")  # fits BIGINT
_NUM = (  # finite: no nan, inf or overflow
    "pattern",
    r"-?[0-9]{1,18}(\.[0-9]+)?([eE][-+]?[0-9]{1,2})?",
    "a finite decimal number",
)
_UUID = (
    "pattern",
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "a lower-case hyphenated UUID",
)
_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
SYNTAX = {
    "observation_uuid": _UUID,
    "photo_uuid": _UUID,
    **{
        column: _INT
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
    **{column: _NUM for column in ("latitude", "longitude", "anomaly_score", "rank_level")},
    "observed_on": ("date", None, "a real day written YYYY-MM-DD"),
    "active": ("one_of", ("true", "false"), "true or false"),
}

# The rules on a well-typed value. With SYNTAX, one definition for both checkers: the format checker
# applies them in Python (value_problem), curation in SQL (value_problem_sql). Kinds: "pattern" (a
# regex the whole value matches; ASCII only, as Python's and DuckDB's case rules differ beyond it),
# "date", "one_of", "range" (inclusive bounds, None for none), "text" (at most that many characters,
# none a control character) and "plausible_day" (within the snapshot's Plausible days). Ancestry's
# links between taxa are curation's (curate/ancestry.sql): resolvable, acyclic, never the taxon
# itself.
INT32_MAX = 2**31 - 1  # width, height and position are stored as INTEGER
MAX_NAME_LENGTH = 500  # real scientific names are under 100 characters
CONTROL = r"[\x00-\x1f\x7f-\x9f]"  # C0, DEL and C1: a NUL, a terminal escape, a stray CR
VALUE_RULES = {
    "photo_id": ("range", (1, None), "at least 1"),
    "taxon_id": ("range", (1, None), "at least 1"),
    "observer_id": ("range", (1, None), "at least 1"),
    "width": ("range", (1, INT32_MAX), f"from 1 to {INT32_MAX}"),
    "height": ("range", (1, INT32_MAX), f"from 1 to {INT32_MAX}"),
    "position": ("range", (0, INT32_MAX), f"from 0 to {INT32_MAX}"),
    "positional_accuracy": ("range", (0, None), "at least 0"),
    "latitude": ("range", (-90, 90), "from -90 to 90"),
    "longitude": ("range", (-180, 180), "from -180 to 180"),
    "rank_level": ("range", (0, 100), "from 0 to 100"),
    "observed_on": ("plausible_day", None, "within the snapshot's days"),
    "ancestry": ("pattern", r"[0-9]{1,18}(/[0-9]{1,18})*", "taxon ids joined by /"),
    "extension": (
        "pattern",
        "|".join("".join(f"[{c}{c.upper()}]" for c in ext) for ext in EXTENSIONS),
        f"{', '.join(EXTENSIONS)} in any case",
    ),
    "license": ("one_of", LICENSES, "a license code"),
    "quality_grade": ("one_of", QUALITY_GRADES, ", ".join(QUALITY_GRADES)),
    "rank": ("one_of", tuple(RANK_LEVELS), "a rank iNaturalist uses"),
    "name": ("text", MAX_NAME_LENGTH, f"at most {MAX_NAME_LENGTH} characters, none a control one"),
}
PAIRED = (("latitude", "longitude"),)  # both present on a row, or both absent
DAY_SLACK = timedelta(days=1)  # a day observed where the calendar is ahead of the snapshot's
SHOWN = 60  # characters of a bad value an error message shows
UNSHOWN = "\ufffd"  # a control character, as an error message shows it
QUOTE = "'"


@dataclass(frozen=True)
class Plausible:
    """The days a snapshot's observations can have: not before `earliest_year` (config
    curate.earliest_observation_year), not after the snapshot's date plus DAY_SLACK (unbounded
    without a date)."""

    earliest_year: int
    snapshot: date | None = None

    def first_day(self) -> date:
        return date(self.earliest_year, 1, 1)

    def last_day(self) -> date | None:
        return self.snapshot + DAY_SLACK if self.snapshot else None

    def says(self) -> str:
        last = self.last_day()
        return f"not before {self.first_day()}" + (
            f", nor after the snapshot's day plus one ({last})" if last else ""
        )


def _is_day(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _holds(rule: tuple, value: str, plausible: Plausible) -> bool:
    kind, argument, _ = rule
    if kind == "pattern":
        return re.fullmatch(argument, value) is not None
    if kind == "date":
        return re.fullmatch(_DATE, value) is not None and _is_day(value)
    if kind == "one_of":
        return value in argument
    if kind == "range":
        low, high = argument
        return (low is None or float(value) >= low) and (high is None or float(value) <= high)
    if kind == "plausible_day":  # reached with a real day: the date rule comes first
        day, last = date.fromisoformat(value), plausible.last_day()
        return plausible.first_day() <= day and (last is None or day <= last)
    return len(value) <= argument and re.search(CONTROL, value) is None  # text


def _sql_breaks(rule: tuple, column: str, plausible: Plausible) -> str:
    """SQL that is true when the column's text (VARCHAR, not NULL) breaks the rule."""
    kind, argument, _ = rule
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
    if kind == "plausible_day":  # reached with a real day: the date rule comes first
        day, last = f"CAST({quoted} AS DATE)", plausible.last_day()
        return f"{day} < DATE '{plausible.first_day()}'" + (
            f" OR {day} > DATE '{last}'" if last else ""
        )
    return f"length({quoted}) > {argument} OR regexp_matches({quoted}, '{CONTROL}')"  # text


def _rules(column: str) -> list[tuple]:
    return [rules[column] for rules in (SYNTAX, VALUE_RULES) if column in rules]


def _says(rule: tuple, plausible: Plausible) -> str:
    return plausible.says() if rule[0] == "plausible_day" else rule[2]


def value_problem(column: str, value: str, plausible: Plausible) -> str | None:
    """Why `value` (as the file has it) is not valid for `column`, or None. Empty means null."""
    if value == "":
        return None
    broken = next((rule for rule in _rules(column) if not _holds(rule, value, plausible)), None)
    if broken is None:
        return None
    shown = re.sub(CONTROL, UNSHOWN, value[:SHOWN])
    if len(value) > SHOWN:
        shown += f"... ({len(value)} characters)"
    return f"{column}='{shown}' is not a valid {column}: {_says(broken, plausible)}"


def pairing_problem(row: dict[str, str]) -> str | None:
    """Why a row's paired columns (PAIRED) are not both present or both absent, or None."""
    for first, second in PAIRED:
        if first in row and second in row and (row[first] == "") != (row[second] == ""):
            return f"{first}='{row[first]}' and {second}='{row[second]}': both or neither"
    return None


def value_problem_sql(columns: Iterable[str], plausible: Plausible) -> str:
    """A SQL expression over rows of text (VARCHAR, NULL for empty) with these columns: for a row,
    the message value_problem gives for its first column whose value breaks a rule, else the one
    pairing_problem gives, else NULL."""
    columns = list(columns)
    cases = []
    for column in columns:
        text = f'"{column}"'
        shown = (
            f"regexp_replace(left({text}, {SHOWN}), '{CONTROL}', '{UNSHOWN}', 'g') || CASE WHEN "
            f"length({text}) > {SHOWN} THEN '... (' || length({text}) || ' characters)' ELSE '' END"
        )
        for rule in _rules(column):  # in order: value_problem names the first one broken
            cases.append(
                f"WHEN {text} IS NOT NULL AND ({_sql_breaks(rule, column, plausible)}) "
                f"THEN '{column}=''' || {shown} || ''' is not a valid {column}: "
                f"{_says(rule, plausible).replace(QUOTE, QUOTE * 2)}'"
            )
    for first, second in PAIRED:
        if first in columns and second in columns:
            one, two = (f"coalesce(\"{c}\", '')" for c in (first, second))
            cases.append(
                f"WHEN (\"{first}\" IS NULL) <> (\"{second}\" IS NULL) THEN '{first}=''' || {one} "
                f"|| ''' and {second}=''' || {two} || ''': both or neither'"
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


STRAY_CR = "a carriage return inside the row (the exporter ends a line with LF alone)"


def shape_problem(fields: int, width: int, last_empty: bool) -> str | None:
    """Why a row of `fields` fields (its last empty or not) does not fit a header of `width`
    columns, or None. One extra trailing empty field is allowed (read by the first columns); a row
    with any other count is never read by position."""
    if fields == width or (fields == width + 1 and last_empty):
        return None
    return f"{fields} fields, expected {width}"


def check_lines(
    table: str,
    lines: Iterator[str],
    where: str,
    plausible: Plausible,
    max_errors: int = 20,
) -> TableCheck:
    """Check a table's lines (header first, each ending as written) against the format rules,
    streaming."""
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
        result.rows += 1
        if not line.endswith("\n"):
            result.errors.append(f"{where}: line {line_no}: no line terminator (truncated file?)")
        fields = line.removesuffix("\n").split("\t")
        if "\r" in line:
            problems = [STRAY_CR]
        elif problem := shape_problem(len(fields), width, fields[-1] == ""):
            problems = [problem]
        else:
            result.extra_field_rows += len(fields) > width
            row = dict(zip(result.columns, fields))
            problems = [value_problem(column, value, plausible) for column, value in row.items()]
            problems.append(pairing_problem(row))
        result.errors.extend(f"{where}: line {line_no}: {p}" for p in problems if p)
        if len(result.errors) >= max_errors:
            result.errors.append(f"{where}: stopped after {max_errors} errors")
            break
    return result


def open_text(path: str | Path) -> IO[str]:
    """Open a .csv or .csv.gz table as UTF-8 text split at LF alone, line ends kept as written."""
    raw = gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="\n")


def check_table_file(path: str | Path, plausible: Plausible | None = None) -> TableCheck:
    """Check one table file; observation days within `plausible` (default: from the configured
    earliest year, with no snapshot date)."""
    table = table_name(path)
    plausible = plausible or Plausible(settings("curate")["earliest_observation_year"])
    try:
        with open_text(path) as text:
            return check_lines(table, iter(text), str(path), plausible)
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
    parser.add_argument(
        "--snapshot-date",
        type=date.fromisoformat,
        help="the snapshot's date (YYYY-MM-DD): observations after it and a day are refused",
    )
    parser.add_argument(
        "--earliest-year",
        type=int,
        help="observations before this year are refused (default: the configuration's "
        "curate.earliest_observation_year)",
    )
    args = parser.parse_args(argv)
    earliest = args.earliest_year or settings("curate")["earliest_observation_year"]
    results = [
        check_table_file(path, Plausible(earliest, args.snapshot_date)) for path in args.files
    ]
    json.dump([r.as_dict() for r in results], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
