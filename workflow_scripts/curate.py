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
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import duckdb

from workflow_scripts import inat_format
from workflow_scripts.files import replace_dir

SQL = Path(__file__).parent / "sql"
TYPES = {
    "photo_uuid": "VARCHAR", "photo_id": "BIGINT", "observation_uuid": "VARCHAR", "observer_id": "BIGINT",
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


def quote(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


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


def check_whole(path: Path) -> None:
    """DuckDB reads a truncated .gz without complaint (it returns the rows before the cut), so each
    file is read to its end here: a .gz's CRC and length are checked, and the last byte must end a
    line. Runs beside DuckDB's load (zlib releases the GIL)."""
    try:
        with opened(path) as raw:
            last = b""
            if path.suffix == ".gz":
                while chunk := raw.read(1 << 23):
                    last = chunk[-1:]
            else:
                raw.seek(-1, os.SEEK_END)
                last = raw.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise CurateError(f"{path}: truncated or corrupt file ({exc}): fetch it again") from exc
    if last != b"\n":
        raise CurateError(f"{path}: last line has no line terminator: truncated file")


def load_table(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> dict:
    """Typed read with a reject table; rows with one extra trailing field are read by their first
    columns. Returns counts and the rejected lines for the report."""
    columns = input_columns(path, table)
    spec = "{" + ", ".join(f"{quote(c)}: {quote(TYPES[c])}" for c in columns) + "}"
    try:
        con.execute(f"""
            CREATE OR REPLACE TABLE {table} AS SELECT * FROM read_csv({quote(path)}, delim='\\t', quote='',
                escape='', header=true, auto_detect=false, columns={spec}, store_rejects=true,
                rejects_table='rejects_{table}', rejects_scan='scans_{table}', max_line_size=10000000)""")
    except duckdb.OutOfMemoryException:
        raise  # not the file's fault: reported as a memory_limit problem by curate()
    except duckdb.Error as exc:
        raise CurateError(f"{path}: cannot read: {exc}") from exc
    width = len(columns)
    fields = ", ".join(f"TRY_CAST(nullif(f[{i + 1}], '') AS {TYPES[c]}) AS \"{c}\"" for i, c in enumerate(columns))
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


def run_sql(con: duckdb.DuckDBPyConnection, name: str, params: dict | None = None) -> None:
    """Run a .sql file statement by statement, each with the parameters it uses."""
    text = re.sub(r"--[^\n]*", "", (SQL / name).read_text())
    for statement in text.split(";"):
        if statement.strip():
            used = {k: v for k, v in (params or {}).items() if f"${k}" in statement}
            con.execute(statement, used)


def curate(snapshot_dir: Path, taxonomy: Path, out: Path, settings: dict | None = None,
           snapshot: str | None = None) -> dict:
    settings = {**DEFAULTS, **(settings or {})}
    day = snapshot_date(snapshot_dir, snapshot)
    paths = {t: find_table(snapshot_dir, t) for t in inat_format.REQUIRED_TABLES}
    missing = [t for t, p in paths.items() if p is None]
    if missing:
        raise CurateError(f"{snapshot_dir}: no {', '.join(f'{t}.csv[.gz]' for t in missing)}")
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        report = _curate_into(staging, paths, taxonomy, settings, day)
    except duckdb.OutOfMemoryException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise CurateError(f"DuckDB needs more than curate.memory_limit={settings['memory_limit']} even when "
                          f"spilling to disk: raise the limit (or lower curate.threads) ({exc})") from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # no output at all
        raise
    replace_dir(staging, out)
    return report


def _curate_into(staging: Path, paths: dict[str, Path], taxonomy: Path, settings: dict, day: str) -> dict:
    with tempfile.TemporaryDirectory(dir=settings["temp_directory"]) as work:
        con = duckdb.connect(config={"preserve_insertion_order": True})
        con.execute(f"SET memory_limit={quote(settings['memory_limit'])}")
        con.execute(f"SET temp_directory={quote(settings['temp_directory'] or work)}")
        if settings["threads"]:
            con.execute(f"SET threads={int(settings['threads'])}")
        with ThreadPoolExecutor(1) as pool:
            whole = pool.map(check_whole, paths.values())
            loaded = {table: load_table(con, table, path) for table, path in paths.items()}
            list(whole)  # raises the first file's CurateError, if any
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
        run_sql(con, "curate.sql", {
            "quality_grades": settings["quality_grades"], "kingdoms": settings["kingdoms"],
            "licenses": settings["licenses"], "url_prefix": settings["photo_url_prefix"].rstrip("/"),
            "photo_size": settings["photo_size"], "snapshot": day})
        con.execute(f"""COPY (SELECT * FROM curated ORDER BY photo_id) TO {quote(staging / 'curated.parquet')}
                        (FORMAT parquet, COMPRESSION {settings['compression']},
                         ROW_GROUP_SIZE {int(settings['row_group_size'])})""")
        report = build_report(con, loaded, day)
    write_rejects(staging / "rejects.csv", loaded)
    (staging / "curation_report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def build_report(con: duckdb.DuckDBPyConnection, loaded: dict, day: str) -> dict:
    def one(sql: str):
        return con.execute(sql).fetchone()[0]

    dropped = dict(con.execute("""SELECT fate, count(*) FROM (
                                      SELECT drop_reason AS fate FROM photo_rows WHERE drop_reason IS NOT NULL
                                      UNION ALL SELECT fate FROM shared_photo_fates WHERE fate IS NOT NULL)
                                  GROUP BY fate ORDER BY fate""").fetchall())
    photo_rejects = len(loaded["photos"]["rejects"])
    if photo_rejects:
        dropped["unparseable_row"] = photo_rejects
    return {
        "snapshot": day,
        "photos_in": loaded["photos"]["rows"] + photo_rejects,
        "photos_out": one("SELECT count(*) FROM curated"),
        "dropped": dropped,
        "rows_read": {t: v["rows"] for t, v in loaded.items()},
        "extra_field_rows": {t: v["extra_field_rows"] for t, v in loaded.items()},
        "rejected_rows": {t: len(v["rejects"]) for t, v in loaded.items()},
        "older_schema_without_anomaly_score": "anomaly_score" not in loaded["observations"]["columns"],
        "duplicate_observation_uuids": one("SELECT count(*) - count(DISTINCT observation_uuid) FROM observations"),
        "unresolved_ancestors": {
            "ancestor_ids": one("SELECT count(DISTINCT s.ancestor_id) FROM lineage_steps s "
                                "ANTI JOIN taxa t ON t.taxon_id = s.ancestor_id"),
            "curated_photos_affected": one("SELECT count(*) FROM kept_rows WHERE unresolved_ancestors > 0"),
        },
        "curated_taxa": one("SELECT count(DISTINCT taxon_id) FROM curated"),
        "curated_taxa_without_common_name": one("SELECT count(DISTINCT taxon_id) FROM curated "
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
