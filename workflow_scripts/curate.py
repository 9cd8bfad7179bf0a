"""Curate one snapshot with DuckDB into a clean Parquet table, accounting for every photo row.

    python -m workflow_scripts.curate --snapshot-dir data/snapshots/2024-09-27/raw \\
        --taxonomy data/snapshots/2024-09-27/raw/inaturalist-taxonomy.dwca.zip --out OUTDIR

DIR holds photos, observations and taxa as .csv or .csv.gz (a fetched raw/ folder or an unpacked
monthly bundle; observers are never read); DWCA is the taxonomy archive or its unpacked folder.
Writes OUTDIR/curated.parquet, OUTDIR/curation_report.json and OUTDIR/rejects.csv (file, line,
reason of every row that could not be parsed). The rules are SQL in workflow_scripts/sql/.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import duckdb

from workflow_scripts import inat_format
from workflow_scripts.duck import quote, run_sql
from workflow_scripts.files import building, write_json

TYPES = {  # uuids as UUID: half the bytes of text to store, join and sort; written back as text
    "photo_uuid": "UUID", "photo_id": "BIGINT", "observation_uuid": "UUID", "observer_id": "BIGINT",
    "extension": "VARCHAR", "license": "VARCHAR", "width": "INTEGER", "height": "INTEGER", "position": "INTEGER",
    "latitude": "DOUBLE", "longitude": "DOUBLE", "positional_accuracy": "BIGINT", "taxon_id": "BIGINT",
    "quality_grade": "VARCHAR", "observed_on": "DATE", "anomaly_score": "DOUBLE", "ancestry": "VARCHAR",
    "rank_level": "DOUBLE", "rank": "VARCHAR", "name": "VARCHAR", "active": "BOOLEAN",
}
DEFAULTS = {  # the same as config.yaml's curate section (a test keeps them equal)
    "quality_grades": ["research"], "kingdoms": ["Animalia", "Plantae", "Fungi"],
    "licenses": ["CC0", "CC-BY", "CC-BY-NC"], "lexicon": "english", "photo_size": "medium",
    "photo_url_prefix": "https://inaturalist-open-data.s3.amazonaws.com/photos",
    "memory_limit": "4GB", "temp_directory": None, "threads": None,
    "row_group_size": 122880, "compression": "zstd",
}


class CurateError(Exception):
    """Input that cannot be curated; the message names the file and the problem."""


def find_table(folder: Path, table: str) -> Path | None:
    for name in (f"{table}.csv.gz", f"{table}.csv"):
        if (folder / name).is_file():
            return folder / name
    return None


def opened(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def input_columns(path: Path, table: str) -> tuple[str, ...]:
    """The header's columns (current or older schema); a clear error for empty or wrong files."""
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
    """Typed read with a reject table; rows with one extra trailing field are read by their first
    columns. Observer columns are never kept. Returns counts and the rejected lines for the report."""
    columns = input_columns(path, table)
    kept = [c for c in columns if c != "observer_id"]
    spec = "{" + ", ".join(f"{quote(c)}: {quote(TYPES[c])}" for c in columns) + "}"
    with readable_csv(path, workdir) as source:
        try:
            con.execute(f"""
                CREATE OR REPLACE TABLE {table} AS SELECT {', '.join(f'"{c}"' for c in kept)}
                FROM read_csv({quote(source)}, delim='\\t', quote='', escape='', header=true, auto_detect=false,
                    columns={spec}, store_rejects=true, rejects_table='rejects_{table}',
                    rejects_scan='scans_{table}')""")
        except duckdb.OutOfMemoryException:
            raise  # not the file's fault: reported as a memory_limit problem by curate()
        except duckdb.Error as exc:
            raise CurateError(f"{path}: cannot read: {exc}") from exc
    width = len(columns)
    fields = ", ".join(f"TRY_CAST(nullif(f[{columns.index(c) + 1}], '') AS {TYPES[c]})" for c in kept)
    parsed = " AND ".join(f"(nullif(f[{i + 1}], '') IS NULL OR TRY_CAST(f[{i + 1}] AS {TYPES[c]}) IS NOT NULL)"
                          for i, c in enumerate(columns))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE extra_{table} AS
        SELECT line, string_split(any_value(csv_line), '\t') AS f FROM rejects_{table}
        GROUP BY line HAVING bool_and(error_type = 'TOO MANY COLUMNS')""")
    recovered = con.execute(f"""
        INSERT INTO {table} SELECT {fields} FROM extra_{table}
        WHERE len(f) = {width + 1} AND {parsed} ORDER BY line""").fetchone()[0]
    rejects = con.execute(f"""
        SELECT line, string_agg(DISTINCT error_type || ': ' || error_message, '; ' ORDER BY error_type || ': ' || error_message)
        FROM rejects_{table}
        WHERE line NOT IN (SELECT line FROM extra_{table} WHERE len(f) = {width + 1} AND {parsed})
        GROUP BY line ORDER BY line""").fetchall()
    if table == "observations" and "anomaly_score" not in columns:
        con.execute("ALTER TABLE observations ADD COLUMN anomaly_score DOUBLE")  # older schema: null
    rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return {"path": path, "rows": rows, "extra_field_rows": recovered, "rejects": rejects, "columns": columns}


def vernacular_file(taxonomy: Path, lexicon: str, workdir: Path) -> Path:
    name = f"VernacularNames-{lexicon}.csv"
    if taxonomy.is_dir():
        path = taxonomy / name
    else:
        try:
            with zipfile.ZipFile(taxonomy) as archive, archive.open(name) as member, \
                    open(workdir / name, "wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise CurateError(f"{taxonomy}: no readable {name} ({exc}); set curate.lexicon to a language "
                              "the archive has") from exc
        path = workdir / name
    if not path.is_file():
        raise CurateError(f"{taxonomy}: has no {name}; set curate.lexicon to a language the archive has")
    return path


def snapshot_date(snapshot_dir: Path, given: str | None) -> str:
    """--snapshot-date, else manifest.json, else a date in the folder's path."""
    if given:
        return date.fromisoformat(given).isoformat()
    manifest = snapshot_dir / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())["snapshot"]
    for part in reversed(snapshot_dir.resolve().parts):
        if match := re.fullmatch(r"(\d{4}-\d{2}-\d{2})|inaturalist-open-data-(\d{4})(\d{2})(\d{2})", part):
            return match.group(1) or "-".join(match.groups()[1:])
    raise CurateError(f"{snapshot_dir}: cannot tell the snapshot date: pass --snapshot-date YYYY-MM-DD")


def curate(snapshot_dir: Path, taxonomy: Path, out: Path, settings: dict | None = None,
           snapshot: str | None = None) -> dict:
    settings = {**DEFAULTS, **(settings or {})}
    day = snapshot_date(snapshot_dir, snapshot)
    paths = {t: find_table(snapshot_dir, t) for t in inat_format.REQUIRED_TABLES}
    missing = [t for t, p in paths.items() if p is None]
    if missing:
        raise CurateError(f"{snapshot_dir}: no {', '.join(f'{t}.csv[.gz]' for t in missing)}")
    with building(out) as staging:
        try:
            return _curate_into(staging, paths, taxonomy, settings, day)
        except duckdb.OutOfMemoryException as exc:
            raise CurateError(f"DuckDB needs more than curate.memory_limit={settings['memory_limit']} even when "
                              f"spilling to disk: raise the limit (or lower curate.threads) ({exc})") from exc


def _curate_into(staging: Path, paths: dict[str, Path], taxonomy: Path, settings: dict, day: str) -> dict:
    if settings["temp_directory"]:
        Path(settings["temp_directory"]).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings["temp_directory"], prefix="curate-") as work:
        con = duckdb.connect(config={"preserve_insertion_order": True})
        con.execute(f"SET memory_limit={quote(settings['memory_limit'])}")
        con.execute(f"SET temp_directory={quote(os.path.join(work, 'spill'))}")
        if settings["threads"]:
            con.execute(f"SET threads={int(settings['threads'])}")
        with ThreadPoolExecutor(len(paths)) as pool:  # gzip allows no parallel parse: tables load side by side
            loads = {table: pool.submit(load_table, con.cursor(), table, path, Path(work))
                     for table, path in paths.items()}
            loaded = {table: load.result() for table, load in loads.items()}
        vernacular = vernacular_file(taxonomy, settings["lexicon"], Path(work))
        try:
            con.execute(f"""CREATE TABLE vernacular AS SELECT * FROM read_csv({quote(vernacular)}, header=true,
                            delim=',', quote='"', escape='"', all_varchar=true, auto_detect=false,
                            columns={{'id': 'BIGINT', 'vernacularName': 'VARCHAR', 'language': 'VARCHAR',
                                      'locality': 'VARCHAR', 'countryCode': 'VARCHAR', 'source': 'VARCHAR',
                                      'lexicon': 'VARCHAR', 'contributor': 'VARCHAR', 'created': 'VARCHAR'}})""")
        except duckdb.Error as exc:
            raise CurateError(f"{vernacular}: cannot read: {exc}") from exc
        run_sql(con, "lineage.sql")
        run_sql(con, "common_names.sql")
        variables = {"quality_grades": settings["quality_grades"], "kingdoms": settings["kingdoms"],
                     "licenses": settings["licenses"], "url_prefix": settings["photo_url_prefix"].rstrip("/"),
                     "photo_size": settings["photo_size"], "snapshot": day}
        for name, value in variables.items():
            con.execute(f"SET VARIABLE {name} = $value", {"value": value})
        run_sql(con, "curate.sql")
        curated = staging / "curated.parquet"
        con.execute(f"""COPY curated TO {quote(curated)}
                        (FORMAT parquet, COMPRESSION {settings['compression']},
                         ROW_GROUP_SIZE {int(settings['row_group_size'])})""")
        con.execute(f"CREATE OR REPLACE VIEW written AS SELECT * FROM read_parquet({quote(curated)})")
        report = build_report(con, loaded, day)
    write_rejects(staging / "rejects.csv", loaded)
    write_json(staging / "curation_report.json", report)
    return report


def build_report(con: duckdb.DuckDBPyConnection, loaded: dict, day: str) -> dict:
    def one(sql: str):
        return con.execute(sql).fetchone()[0]

    dropped = dict(con.execute("""SELECT fate, count(*) FROM (
                                      SELECT drop_reason AS fate FROM photo_fates WHERE drop_reason IS NOT NULL
                                      UNION ALL SELECT fate FROM shared_photo_fates WHERE fate IS NOT NULL)
                                  GROUP BY fate ORDER BY fate""").fetchall())
    photo_rejects = len(loaded["photos"]["rejects"])
    if photo_rejects:
        dropped["unparseable_row"] = photo_rejects
    return {
        "snapshot": day,
        "photos_in": loaded["photos"]["rows"] + photo_rejects,
        "photos_out": one("SELECT count(*) FROM written"),
        "dropped": dropped,
        "rows_read": {t: v["rows"] for t, v in loaded.items()},
        "extra_field_rows": {t: v["extra_field_rows"] for t, v in loaded.items()},
        "rejected_rows": {t: len(v["rejects"]) for t, v in loaded.items()},
        "older_schema_without_anomaly_score": "anomaly_score" not in loaded["observations"]["columns"],
        "duplicate_observation_uuids": one("SELECT coalesce(sum(copies - 1), 0) FROM repeated_observations"),
        "unresolved_ancestors": {
            "ancestor_ids": one("SELECT count(DISTINCT s.ancestor_id) FROM lineage_steps s "
                                "ANTI JOIN taxa t ON t.taxon_id = s.ancestor_id"),
            "curated_photos_affected": one("SELECT count(*) FROM kept_photo_rows WHERE unresolved_ancestors > 0"),
        },
        "curated_taxa": one("SELECT count(DISTINCT taxon_id) FROM written"),
        "curated_taxa_without_common_name": one("SELECT count(DISTINCT taxon_id) FROM written "
                                                "WHERE common_name IS NULL"),
    }


def write_rejects(path: Path, loaded: dict) -> None:
    lines = ["file\tline\treason\n"]
    for table in sorted(loaded):
        for line, reason in loaded[table]["rejects"]:
            lines.append(f"{loaded[table]['path'].name}\t{line}\t{reason}\n")
    path.write_text("".join(lines), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.curate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snapshot-dir", type=Path, required=True)
    parser.add_argument("--taxonomy", type=Path, required=True, help="inaturalist-taxonomy.dwca.zip or its folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="config.yaml: its curate section replaces the defaults")
    parser.add_argument("--settings", type=json.loads, default={},
                        help="JSON object of curate settings, applied last (the Snakemake rule passes these)")
    parser.add_argument("--snapshot-date", help="YYYY-MM-DD (default: from manifest.json or the folder name)")
    args = parser.parse_args(argv)
    settings = dict(args.settings)
    if args.config:
        from workflow_scripts.config import load_config

        settings = {**load_config(args.config)["curate"], **settings}
    try:
        report = curate(args.snapshot_dir, args.taxonomy, args.out, settings, args.snapshot_date)
    except CurateError as exc:
        print(f"curate failed: {exc}", file=sys.stderr)
        return 1
    print(f"{args.out}: {report['photos_in']} photo rows in, {report['photos_out']} curated, dropped "
          f"{json.dumps(report['dropped'], sort_keys=True)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
