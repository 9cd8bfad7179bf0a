"""Read the iNaturalist Open Data tables into DuckDB as the exporter writes them: typed, every row
accounted for (a row with one extra trailing field is read by its first columns; any other row
that cannot be parsed is rejected with its line and cause), observer columns never kept. Used by
curation and by the monthly diff.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from workflow_scripts.common import inat_format
from workflow_scripts.common.cli import StageError
from workflow_scripts.common.drop_reasons import UNPARSEABLE, invalid
from workflow_scripts.common.duck import quote

TYPES = {  # uuids as UUID: half the bytes of text to store, join and sort; written back as text
    "photo_uuid": "UUID",
    "photo_id": "BIGINT",
    "observation_uuid": "UUID",
    "observer_id": "BIGINT",
    "extension": "VARCHAR",
    "license": "VARCHAR",
    "width": "INTEGER",
    "height": "INTEGER",
    "position": "INTEGER",
    "latitude": "DOUBLE",
    "longitude": "DOUBLE",
    "positional_accuracy": "BIGINT",
    "taxon_id": "BIGINT",
    "quality_grade": "VARCHAR",
    "observed_on": "DATE",
    "anomaly_score": "DOUBLE",
    "ancestry": "VARCHAR",
    "rank_level": "DOUBLE",
    "rank": "VARCHAR",
    "name": "VARCHAR",
    "active": "BOOLEAN",
}


# Columns of a table while it is read: why a row breaks the format, and its key (first column) as
# the file has it, which a loose cast would change (2.5 -> 3) or lose (abc -> NULL).
PROBLEM, KEY = "value_problem", "key_as_written"


class CurateError(StageError):
    """Input that cannot be curated (or, by the monthly diff, read as curation reads it); the
    message names the file and the problem."""


def ident(column: str) -> str:
    return f'"{column}"'


def find_table(folder: Path, table: str) -> Path | None:
    for name in (f"{table}.csv.gz", f"{table}.csv"):
        if (folder / name).is_file():
            return folder / name
    return None


def opened(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


GZIP_MAGIC = b"\x1f\x8b"


def check_compression(path: Path) -> None:
    """A .gz that is not gzip, or gzip under another name: say so, not 'corrupt' or 'missing
    column'."""
    if path.stat().st_size == 0:
        raise CurateError(f"{path}: empty file (0 bytes, not even a header line): fetch it again")
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
    if path.suffix == ".gz" and not gzipped:
        plain = path.with_suffix("").name
        raise CurateError(
            f"{path}: named .gz but not gzip-compressed: fetch it again, or if it is the table "
            f"as plain text, compress it (mv {path.name} {plain} && gzip {plain})"
        )
    if path.suffix != ".gz" and gzipped:
        raise CurateError(f"{path}: gzip-compressed but not named .gz: rename it to {path.name}.gz")


def input_columns(path: Path, table: str) -> tuple[str, ...]:
    """The header's columns (current or older schema); a clear error for empty or wrong files: what
    was found and what to do."""
    check_compression(path)
    try:
        with opened(path) as raw:
            header = raw.readline().decode("utf-8")
    except (OSError, EOFError, zlib.error) as exc:
        raise CurateError(f"{path}: truncated or corrupt file ({exc}): fetch it again") from exc
    except UnicodeDecodeError as exc:
        raise CurateError(f"{path}: line 1: not UTF-8 ({exc})") from exc
    if not header:
        raise CurateError(f"{path}: empty file (no header line)")
    try:
        return inat_format.check_header(table, header, str(path))
    except ValueError as exc:
        raise CurateError(str(exc)) from exc


def skip_over(line: int, skipped: list[int]) -> int:
    """The `line`-th line counted without the sorted `skipped` lines, counted with them."""
    for skip in skipped:
        if skip > line:
            break
        line += 1
    return line


@dataclass
class SetAside:
    """What the reader took out of a file before DuckDB parsed it: (line, first field, problem) of
    each line whose shape DuckDB would misread, and the rows read with one trailing empty field."""

    lines: list[tuple[int, str, str]] = field(default_factory=list)
    extra_field_rows: int = 0


def sift(lines: bytes, first: int, width: int, aside: SetAside) -> bytes:
    """Whole lines (`first` the number of the first) less those with a carriage return inside
    (DuckDB would end the line there) or a field count other than the header's, which DuckDB would
    read by position (it drops trailing empty fields without a word)."""
    kept = []
    for number, line in enumerate(lines.split(b"\n")[:-1], start=first):
        fields = line.count(b"\t") + 1
        problem = (
            inat_format.STRAY_CR
            if b"\r" in line
            else inat_format.shape_problem(fields, width, line.endswith(b"\t"))
        )
        if problem:
            key = line.split(b"\t", 1)[0].decode("utf-8", "replace")
            aside.lines.append((number, key, problem))
        else:
            aside.extra_field_rows += fields > width
            kept.append(line + b"\n")
    return b"".join(kept)


@contextlib.contextmanager
def readable_csv(path: Path, workdir: Path, width: int, aside: SetAside):
    """A named pipe DuckDB reads the file through, less the lines `sift` sets aside in `aside`
    (looked for only in the 1 MB blocks whose counts of tabs and lines disagree with the header, or
    that hold a CR). A .gz is decompressed here, where its CRC and length are checked: DuckDB reads
    a truncated .gz without complaint. One pass, beside DuckDB's parsing."""
    pipe = workdir / path.name.removesuffix(".gz")  # photos.csv: DuckDB sees plain CSV
    os.mkfifo(pipe)
    stop = threading.Event()
    outcome: dict = {}

    def feed() -> None:
        try:
            with opened(path) as source, open(pipe, "wb") as sink:
                line, rest = 1, b""  # the file's line that `rest` starts
                while not stop.is_set() and (chunk := source.read(1 << 20)):
                    data = rest + chunk
                    end = data.rfind(b"\n") + 1  # whole lines: data[:end], counted in place
                    lines, tabs = data.count(b"\n", 0, end), data.count(b"\t", 0, end)
                    if data.find(b"\r", 0, end) >= 0 or tabs != lines * (width - 1):
                        sink.write(sift(data[:end], line, width, aside))
                    else:
                        sink.write(memoryview(data)[:end])
                    line, rest = line + lines, data[end:]
                sink.write(rest)
            outcome["unterminated"] = rest != b""
        except BrokenPipeError:
            pass  # DuckDB stopped reading: its own error is the one reported
        except (OSError, EOFError, zlib.error) as exc:
            outcome["error"] = exc

    feeder = threading.Thread(target=feed, name=f"read {path.name}", daemon=True)
    feeder.start()
    try:
        yield pipe
    finally:
        if feeder.is_alive():  # DuckDB failed before reading to the end: unblock the feeder
            stop.set()
            reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
            try:
                while feeder.is_alive():
                    with contextlib.suppress(BlockingIOError):
                        os.read(reader, 1 << 20)
                    feeder.join(0.01)
            finally:
                os.close(reader)
        pipe.unlink()
    if "error" in outcome:
        raise CurateError(f"{path}: truncated or corrupt file ({outcome['error']}): fetch it again")
    if outcome.get("unterminated"):
        raise CurateError(f"{path}: last line has no line terminator: truncated file")


def unparseable(error_type: str, message: str, csv_line: str, width: int) -> str:
    """Why DuckDB's CSV reader set a line aside, in the format's words. (A wrong field count
    reaches it only beside another that evens out its block's tab count.)"""
    if error_type in ("TOO MANY COLUMNS", "MISSING COLUMNS"):
        fields = csv_line.split("\t")
        return inat_format.shape_problem(len(fields), width, fields[-1] == "")
    if error_type == "INVALID ENCODING":
        return "not valid UTF-8"
    return f"{error_type.lower()}: {message.splitlines()[0]}"


def load_table(
    con: duckdb.DuckDBPyConnection,
    table: str,
    path: Path,
    workdir: Path,
    plausible: inat_format.Plausible,
) -> dict:
    """Read as text, then typed: a row whose value breaks the format's rules (inat_format: syntax,
    values and the snapshot's `plausible` days) or whose fields do not fit the header is rejected
    with its line, never cast loosely or read by position. A row with one extra trailing empty field
    is read by its first columns. Observer columns are never kept. Returns counts and the rejected
    lines for the report."""
    columns = input_columns(path, table)
    kept = [c for c in columns if c != "observer_id"]
    spec = "{" + ", ".join(f"{quote(c)}: 'VARCHAR'" for c in columns) + "}"
    typed = (
        f"{', '.join(f'TRY_CAST({ident(c)} AS {TYPES[c]}) AS {ident(c)}' for c in kept)}, "
        f"{inat_format.value_problem_sql(columns, plausible)} AS {PROBLEM}, "
        f"{ident(columns[0])} AS {KEY}"
    )
    aside = SetAside()
    with readable_csv(path, workdir, len(columns), aside) as source:
        try:
            con.execute(f"""
                CREATE OR REPLACE TABLE {table} AS SELECT {typed}
                FROM read_csv({quote(source)}, delim='\\t', quote='', escape='', header=true,
                    new_line='\\n', auto_detect=false, columns={spec}, store_rejects=true,
                    rejects_table='rejects_{table}', rejects_scan='scans_{table}')""")
        except duckdb.OutOfMemoryException:
            raise  # not the file's fault: reported as a memory_limit problem by curate()
        except (duckdb.InvalidInputException, duckdb.IOException) as exc:  # the file: DuckDB
            # advises its own settings and names the pipe, neither the user's to change
            first = str(exc).splitlines()[0].replace(str(source), str(path))
            raise CurateError(f"{path}: cannot read ({first}): fetch it again") from exc
    removed = [line for line, _, _ in aside.lines]
    rejects = list(aside.lines)
    for line, error_type, message, csv_line in con.execute(f"""
            SELECT line, any_value(error_type), any_value(error_message), any_value(csv_line)
            FROM rejects_{table} GROUP BY line ORDER BY line""").fetchall():
        problem = unparseable(error_type, message, csv_line, len(columns))
        rejects.append((skip_over(line, removed), csv_line.split("\t", 1)[0], problem))
    rejects.sort()
    con.execute(f"CREATE OR REPLACE TABLE rejected_keys_{table} (key VARCHAR)")
    if rejects:
        con.execute(
            f"INSERT INTO rejected_keys_{table} SELECT DISTINCT unnest($keys)",
            {"keys": [key for _, key, _ in rejects]},
        )
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if rows + len(rejects) == 0:
        raise CurateError(f"{path}: a header line and no rows: fetch it again")
    loaded = {
        "path": path,
        "extra_field_rows": aside.extra_field_rows,
        "rejects": [(line, problem, UNPARSEABLE) for line, _, problem in rejects],
        "columns": columns,
        "skipped_lines": [line for line, _, _ in rejects],
        "rows": rows,
    }
    reject_rows(con, table, loaded, f"SELECT rowid, {PROBLEM} FROM {table}", key=KEY)
    for column in (PROBLEM, KEY):
        con.execute(
            f"ALTER TABLE {table} DROP COLUMN {column}"
        )  # row ids stay: reject_rows maps them to lines
    if table == "observations" and "anomaly_score" not in columns:
        con.execute(
            "ALTER TABLE observations ADD COLUMN anomaly_score DOUBLE"
        )  # older schema: null
    return loaded


def file_line(loaded: dict, rowid: int) -> int:
    """The line of the file a table row was read from: rows are in file order (insertion order is
    kept), less the lines set aside before or by the CSV reader."""
    return skip_over(rowid + 2, loaded["skipped_lines"])  # line 1 is the header


def reject_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    loaded: dict,
    problems_sql: str,
    key: str | None = None,
    cause: str | None = None,
) -> None:
    """Remove the rows `problems_sql` (rowid, problem; problem NULL for a good row) finds, each
    recorded with its line, its problem and its cause (default: invalid_<the column the problem
    starts with>), and its key (`key`, SQL on the table; default: the first column) among the
    table's rejected keys."""
    found = con.execute(
        f"SELECT * FROM ({problems_sql}) AS p(row, problem) WHERE problem IS NOT NULL ORDER BY row"
    ).fetchall()
    if not found:
        return
    rows = [row for row, _ in found]
    key = key or f"{ident(loaded['columns'][0])}::VARCHAR"
    con.execute(
        f"INSERT INTO rejected_keys_{table} SELECT DISTINCT {key} FROM {table} "
        f"WHERE rowid IN (SELECT unnest($rows)) AND {key} IS NOT NULL",
        {"rows": rows},
    )
    con.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT unnest($rows))", {"rows": rows})
    loaded["rows"] -= len(rows)
    loaded["rejects"] = sorted(
        loaded["rejects"]
        + [
            (
                file_line(loaded, row),
                problem,
                cause or invalid(re.match(r"\w+", problem).group()),
            )
            for row, problem in found
        ]
    )


def reject_conflicts(
    con: duckdb.DuckDBPyConnection, table: str, loaded: dict, key: str, agree: list[str], cause: str
) -> None:
    """Reject every row of a `key` whose rows differ in any of the `agree` columns (a pair that
    exists nowhere else if one were kept), with its lines, under `cause`; the keys go to
    conflicting_keys_<table> as well as its rejected keys. Identical repeats stay for the
    curation's rules to count."""
    rows = con.execute(f"""
        WITH repeated AS (SELECT {ident(key)} FROM {table} GROUP BY ALL HAVING count(*) > 1),
        differing AS (SELECT {ident(key)} FROM {table} SEMI JOIN repeated USING ({ident(key)})
                      GROUP BY ALL HAVING count(DISTINCT ({", ".join(map(ident, agree))})) > 1)
        SELECT rowid, {ident(key)}::VARCHAR FROM {table} SEMI JOIN differing USING ({ident(key)})
        ORDER BY rowid""").fetchall()
    lines: dict[str, list[int]] = {}
    for row, value in rows:
        lines.setdefault(value, []).append(file_line(loaded, row))
    con.execute(f"CREATE OR REPLACE TABLE conflicting_keys_{table} (key VARCHAR)")
    if lines:
        con.execute(
            f"INSERT INTO conflicting_keys_{table} SELECT unnest($keys)", {"keys": sorted(lines)}
        )
    problems = [
        (
            row,
            f"{key}={value} has rows that differ, on lines "
            f"{', '.join(map(str, sorted(lines[value])))}",
        )
        for row, value in rows
    ]
    con.execute(f"CREATE OR REPLACE TEMP TABLE conflicts_{table} (row BIGINT, problem VARCHAR)")
    if problems:
        con.executemany(f"INSERT INTO conflicts_{table} VALUES (?, ?)", problems)
    reject_rows(
        con,
        table,
        loaded,
        f"SELECT * FROM conflicts_{table}",
        key=f"{ident(key)}::VARCHAR",
        cause=cause,
    )
