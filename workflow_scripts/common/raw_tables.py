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
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
    if path.suffix == ".gz" and not gzipped:
        raise CurateError(
            f"{path}: named .gz but not gzip-compressed (plain text?): rename it to "
            f"{path.with_suffix('').name}, or fetch it again"
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


def check_line_end(path: Path, last: bytes) -> None:
    if last != b"\n":
        raise CurateError(f"{path}: last line has no line terminator: truncated file")


@contextlib.contextmanager
def readable_csv(path: Path, workdir: Path):
    """The path DuckDB should read. DuckDB reads a truncated .gz without complaint (it returns the
    rows before the cut), so a .gz is decompressed here, where its CRC and length are checked, and
    streamed to DuckDB through a named pipe: one decompression, beside DuckDB's parsing."""
    if path.suffix != ".gz":
        with open(path, "rb") as raw:
            raw.seek(-1, os.SEEK_END)
            check_line_end(path, raw.read(1))
        yield path
        return
    pipe = workdir / path.stem  # photos.csv: DuckDB sees plain CSV
    os.mkfifo(pipe)
    stop = threading.Event()
    outcome: dict = {}

    def feed() -> None:
        try:
            with gzip.open(path, "rb") as source, open(pipe, "wb") as sink:
                last = b""
                while not stop.is_set() and (chunk := source.read(1 << 20)):
                    sink.write(chunk)
                    last = chunk[-1:]
            outcome["last"] = last
        except BrokenPipeError:
            pass  # DuckDB stopped reading: its own error is the one reported
        except (OSError, EOFError, zlib.error) as exc:
            outcome["error"] = exc

    feeder = threading.Thread(target=feed, name=f"gunzip {path.name}", daemon=True)
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
    check_line_end(path, outcome.get("last", b""))


def load_table(con: duckdb.DuckDBPyConnection, table: str, path: Path, workdir: Path) -> dict:
    """Read as text, then typed: a row whose value breaks the format's rules (inat_format: syntax
    and values) is rejected with its line, never cast loosely. Rows with one extra trailing field
    are read by their first columns. Observer columns are never kept. Returns counts and the
    rejected lines for the report."""
    columns = input_columns(path, table)
    kept = [c for c in columns if c != "observer_id"]
    spec = "{" + ", ".join(f"{quote(c)}: 'VARCHAR'" for c in columns) + "}"
    typed = (
        f"{', '.join(f'TRY_CAST({ident(c)} AS {TYPES[c]}) AS {ident(c)}' for c in kept)}, "
        f"{inat_format.value_problem_sql(columns)} AS {PROBLEM}, {ident(columns[0])} AS {KEY}"
    )
    with readable_csv(path, workdir) as source:
        try:
            con.execute(f"""
                CREATE OR REPLACE TABLE {table} AS SELECT {typed}
                FROM read_csv({quote(source)}, delim='\\t', quote='', escape='', header=true,
                    auto_detect=false, columns={spec}, store_rejects=true,
                    rejects_table='rejects_{table}', rejects_scan='scans_{table}')""")
        except duckdb.OutOfMemoryException:
            raise  # not the file's fault: reported as a memory_limit problem by curate()
        except duckdb.Error as exc:
            raise CurateError(f"{path}: cannot read: {exc}") from exc
    read_rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    width = len(columns)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE extra_{table} AS
        SELECT line, string_split(any_value(csv_line), '\t') AS f FROM rejects_{table}
        GROUP BY line HAVING bool_and(error_type = 'TOO MANY COLUMNS')""")
    recoverable = f"FROM extra_{table} WHERE len(f) = {width + 1}"
    recovered = [
        line for (line,) in con.execute(f"SELECT line {recoverable} ORDER BY line").fetchall()
    ]
    fields = ", ".join(f"nullif(f[{i + 1}], '') AS {ident(c)}" for i, c in enumerate(columns))
    con.execute(
        f"INSERT INTO {table} SELECT {typed} FROM (SELECT {fields} {recoverable} ORDER BY line)"
    )
    rejects = [
        (line, reason, UNPARSEABLE)
        for line, reason in con.execute(f"""
        SELECT line, string_agg(DISTINCT error_type || ': ' || error_message, '; '
                                ORDER BY error_type || ': ' || error_message)
        FROM rejects_{table}
        WHERE line NOT IN (SELECT line {recoverable})
        GROUP BY line ORDER BY line""").fetchall()
    ]
    con.execute(f"""CREATE OR REPLACE TABLE rejected_keys_{table} AS
                    SELECT DISTINCT split_part(csv_line, '\t', 1) AS key FROM rejects_{table}
                    WHERE line NOT IN (SELECT line {recoverable})""")
    loaded = {
        "path": path,
        "extra_field_rows": len(recovered),
        "rejects": rejects,
        "columns": columns,
        "read_rows": read_rows,
        "skipped_lines": sorted(
            {
                line
                for (line,) in con.execute(f"SELECT DISTINCT line FROM rejects_{table}").fetchall()
            }
        ),
        "recovered_lines": recovered,
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
    loaded["rows"] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return loaded


def file_line(loaded: dict, rowid: int) -> int:
    """The line of the file a table row was read from: rows are in file order (insertion order is
    kept), less the lines the CSV reader set aside; the rows recovered from those come last."""
    if rowid >= loaded["read_rows"]:
        return loaded["recovered_lines"][rowid - loaded["read_rows"]]
    line = rowid + 2  # line 1 is the header
    for skipped in loaded["skipped_lines"]:
        if skipped > line:
            break
        line += 1
    return line


def reject_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    loaded: dict,
    problems_sql: str,
    key: str | None = None,
) -> None:
    """Remove the rows `problems_sql` (rowid, problem; problem NULL for a good row) finds, each
    recorded with its line, its problem and its cause (invalid_<the column the problem starts
    with>), and its key (`key`, SQL on the table; default: the first column) among the table's
    rejected keys."""
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
    loaded["rejects"] = sorted(
        loaded["rejects"]
        + [
            (file_line(loaded, row), problem, invalid(re.match(r"\w+", problem).group()))
            for row, problem in found
        ]
    )
