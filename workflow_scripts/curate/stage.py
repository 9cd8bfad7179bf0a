"""Curate one snapshot with DuckDB into a clean Parquet table, accounting for every photo row.

Reads photos, observations and taxa (.csv or .csv.gz: a fetched raw/ folder or an unpacked monthly
bundle; observers are never read) and the taxonomy archive (zip or folder); writes, in the output
folder, curated.parquet, curation_report.json and rejects.csv (file, line, reason of every row
that could not be parsed). The rules are SQL beside this module (lineage.sql, common_names.sql,
curate.sql); the settings are config.yaml's `curate` section.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import duckdb

from workflow_scripts.common import contracts, inat_format
from workflow_scripts.common.config import settings as curate_settings
from workflow_scripts.common.drop_reasons import CONFLICTING_PHOTO
from workflow_scripts.common.duck import quote, run_sql
from workflow_scripts.common.files import building, write_json
from workflow_scripts.common.raw_tables import (
    CurateError,
    find_table,
    load_table,
    reject_conflicts,
    reject_rows,
)

HERE = Path(__file__).parent
# Rows of one key that must agree (table: key, the columns, the rejected rows' cause): a taxon and
# an observation in everything curation keeps, a photo in its file (the same photo on several
# observations is one file). Identical repeats are for curate.sql to count.
CONFLICTS = {
    table: (key, [c for c in inat_format.COLUMNS[table] if c not in (key, "observer_id")], cause)
    for table, key, cause in (
        ("taxa", "taxon_id", "conflicting_taxon"),
        ("observations", "observation_uuid", "conflicting_observation"),
    )
} | {
    "photos": (
        "photo_id",
        ["photo_uuid", "extension", "license", "width", "height"],
        CONFLICTING_PHOTO,
    )
}


def vernacular_file(taxonomy: Path, lexicon: str, workdir: Path) -> Path:
    name = f"VernacularNames-{lexicon}.csv"
    if taxonomy.is_dir():
        path = taxonomy / name
    else:
        try:
            with (
                zipfile.ZipFile(taxonomy) as archive,
                archive.open(name) as member,
                open(workdir / name, "wb") as out,
            ):
                shutil.copyfileobj(member, out, 1 << 20)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise CurateError(
                f"{taxonomy}: no readable {name} ({exc}); set curate.lexicon to a language "
                "the archive has"
            ) from exc
        path = workdir / name
    if not path.is_file():
        raise CurateError(
            f"{taxonomy}: has no {name}; set curate.lexicon to a language the archive has"
        )
    return path


def snapshot_date(snapshot_dir: Path, given: str | None) -> str:
    """--date, else manifest.json, else a date in the folder's path."""
    if given:
        return date.fromisoformat(given).isoformat()
    manifest = snapshot_dir / contracts.MANIFEST
    if manifest.is_file():
        return json.loads(manifest.read_text())["snapshot"]
    for part in reversed(snapshot_dir.resolve().parts):
        if match := re.fullmatch(
            r"(\d{4}-\d{2}-\d{2})|inaturalist-open-data-(\d{4})(\d{2})(\d{2})", part
        ):
            return match.group(1) or "-".join(match.groups()[1:])
    raise CurateError(f"{snapshot_dir}: cannot tell the snapshot date: pass --date YYYY-MM-DD")


def curate(
    snapshot_dir: Path,
    out: Path,
    settings: dict | None = None,
    taxonomy: Path | None = None,
    snapshot: str | None = None,
) -> dict:
    """`snapshot_dir`: the tables; `taxonomy`: the DwC-A (default: the archive in snapshot_dir)."""
    settings = curate_settings("curate", settings)
    taxonomy = taxonomy or snapshot_dir / contracts.TAXONOMY_ARCHIVE
    day = snapshot_date(snapshot_dir, snapshot)
    paths = {t: find_table(snapshot_dir, t) for t in inat_format.REQUIRED_TABLES}
    missing = [t for t, p in paths.items() if p is None]
    if missing:
        raise CurateError(f"{snapshot_dir}: no {', '.join(f'{t}.csv[.gz]' for t in missing)}")
    kept_rejects = (
        out.parent / f"{out.name}.{contracts.REJECTS}"
    )  # a failed run's, named in its error
    kept_rejects.unlink(missing_ok=True)
    with building(out) as staging:
        try:
            return _curate_into(staging, paths, taxonomy, settings, day, kept_rejects)
        except duckdb.OutOfMemoryException as exc:
            raise CurateError(
                f"DuckDB needs more than curate.memory_limit={settings['memory_limit']} even when "
                f"spilling to disk: raise the limit (or lower curate.threads) ({exc})"
            ) from exc


def _curate_into(
    staging: Path,
    paths: dict[str, Path],
    taxonomy: Path,
    settings: dict,
    day: str,
    kept_rejects: Path,
) -> dict:
    # DuckDB's spill files and the unpacked names live under the staging folder unless a spill
    # folder is configured: a killed run's are removed with its staging folder by the next run.
    if settings["temp_directory"]:
        Path(settings["temp_directory"]).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(
        dir=settings["temp_directory"] or staging, prefix="curate-"
    ) as work:
        con = duckdb.connect(config={"preserve_insertion_order": True})
        con.execute(f"SET memory_limit={quote(settings['memory_limit'])}")
        con.execute(f"SET temp_directory={quote(os.path.join(work, 'spill'))}")
        if settings["threads"]:
            con.execute(f"SET threads={int(settings['threads'])}")
        plausible = inat_format.Plausible(
            settings["earliest_observation_year"], date.fromisoformat(day)
        )
        with ThreadPoolExecutor(len(paths)) as pool:  # gzip parses on one core: side by side
            loads = {
                table: pool.submit(load_table, con.cursor(), table, path, Path(work), plausible)
                for table, path in paths.items()
            }
            loaded = {table: load.result() for table, load in loads.items()}
        for table, (key, agree, cause) in CONFLICTS.items():
            reject_conflicts(con, table, loaded[table], key, agree, cause)
        vernacular = vernacular_file(taxonomy, settings["lexicon"], Path(work))
        try:
            con.execute(f"""CREATE TABLE vernacular AS SELECT * FROM read_csv({quote(vernacular)},
                            header=true, delim=',', quote='"', escape='"', all_varchar=true,
                            auto_detect=false,
                            columns={{'id': 'BIGINT', 'vernacularName': 'VARCHAR',
                                      'language': 'VARCHAR', 'locality': 'VARCHAR',
                                      'countryCode': 'VARCHAR', 'source': 'VARCHAR',
                                      'lexicon': 'VARCHAR', 'contributor': 'VARCHAR',
                                      'created': 'VARCHAR'}})""")
        except duckdb.Error as exc:
            raise CurateError(f"{vernacular}: cannot read: {exc}") from exc
        run_sql(con, HERE / "ancestry.sql")
        reject_rows(con, "taxa", loaded["taxa"], "SELECT taxon_row, problem FROM ancestry_problems")
        run_sql(con, HERE / "lineage.sql")
        run_sql(con, HERE / "common_names.sql")
        variables = {
            "quality_grades": settings["quality_grades"],
            "kingdoms": settings["kingdoms"],
            "licenses": settings["licenses"],
            "url_prefix": settings["photo_url_prefix"].rstrip("/"),
            "photo_size": settings["photo_size"],
            "snapshot": day,
        }
        for name, value in variables.items():
            con.execute(f"SET VARIABLE {name} = $value", {"value": value})
        run_sql(con, HERE / "curate.sql")
        curated = staging / contracts.CURATED_TABLE
        con.execute(f"""COPY curated TO {quote(curated)}
                        (FORMAT parquet, COMPRESSION {settings["compression"]},
                         ROW_GROUP_SIZE {int(settings["row_group_size"])})""")
        con.execute(
            f"CREATE OR REPLACE VIEW written AS SELECT * FROM read_parquet({quote(curated)})"
        )
        report = build_report(con, loaded, day)
    write_rejects(staging / contracts.REJECTS, loaded)
    try:
        check_floors(report, settings["drop_limits"], settings["allow_empty"])
    except CurateError as exc:  # the staging folder goes: keep what the message sends the user to
        shutil.copyfile(staging / contracts.REJECTS, kept_rejects)
        raise CurateError(f"{exc} (rejected lines: {kept_rejects})") from None
    write_json(staging / contracts.CURATION_REPORT, report)
    return report


def build_report(con: duckdb.DuckDBPyConnection, loaded: dict, day: str) -> dict:
    def one(sql: str):
        return con.execute(sql).fetchone()[0]

    dropped = dict(
        con.execute("""SELECT fate, count(*) FROM (
                           SELECT drop_reason AS fate FROM photo_fates WHERE drop_reason IS NOT NULL
                           UNION ALL SELECT fate FROM shared_photo_fates WHERE fate IS NOT NULL)
                       GROUP BY fate ORDER BY fate""").fetchall()
    )
    for _, _, cause in loaded["photos"]["rejects"]:
        dropped[cause] = dropped.get(cause, 0) + 1
    photo_rejects = len(loaded["photos"]["rejects"])
    return {
        "snapshot": day,
        "photos_in": loaded["photos"]["rows"] + photo_rejects,
        "photos_out": one("SELECT count(*) FROM written"),
        "dropped": dict(sorted(dropped.items())),
        "rows_read": {t: v["rows"] for t, v in loaded.items()},
        "extra_field_rows": {t: v["extra_field_rows"] for t, v in loaded.items()},
        "rejected_rows": {t: len(v["rejects"]) for t, v in loaded.items()},
        "older_schema_without_anomaly_score": "anomaly_score"
        not in loaded["observations"]["columns"],
        "duplicate_observation_uuids": one(
            "SELECT coalesce(sum(copies - 1), 0) FROM repeated_observations"
        ),
        "duplicate_taxon_ids": one("SELECT count(*) - count(DISTINCT taxon_id) FROM taxa"),
        "conflicting_keys": {
            table: one(f"SELECT count(*) FROM conflicting_keys_{table}") for table in CONFLICTS
        },
        "curated_taxa": one("SELECT count(DISTINCT taxon_id) FROM written"),
        "curated_taxa_without_common_name": one(
            "SELECT count(DISTINCT taxon_id) FROM written WHERE common_name IS NULL"
        ),
    }


def check_floors(report: dict, limits: dict, allow_empty: bool) -> None:
    """Fail rather than write a table that lost what it should not have: no photo at all, or more of
    the photos dropped for one reason than curate.drop_limits allows (a wrong input, not a
    month)."""
    if report["photos_out"] == 0 and not allow_empty:
        raise CurateError(
            f"no photo survived curation ({report['photos_in']:,} photo rows in; dropped most: "
            f"{largest_drops(report, 3)}; rejected rows: {report['rejected_rows']}): check the "
            f"input files and the rejected lines, or set curate.allow_empty: true to write "
            f"an empty table"
        )
    for reason, count in report["dropped"].items():
        key = reason if reason in limits else "other"
        limit = limits[key]
        if count > limit * report["photos_in"]:
            raise CurateError(
                f"{count / report['photos_in']:.1%} of the photo rows dropped as {reason} "
                f"({count:,} of {report['photos_in']:,}), above curate.drop_limits.{key} = "
                f"{limit}: check the input and the rejected lines, or raise "
                f"curate.drop_limits.{reason} if this month is expected to lose that many"
            )


def largest_drops(report: dict, top: int) -> str:
    """The `top` drop reasons with the most photos, largest first: 'quality_grade 8,870, ...'."""
    ranked = sorted(report["dropped"].items(), key=lambda item: (-item[1], item[0]))[:top]
    return ", ".join(f"{reason} {count:,}" for reason, count in ranked) or "none"


def write_rejects(path: Path, loaded: dict) -> None:
    lines = ["file\tline\treason\n"]
    for table in sorted(loaded):
        for line, reason, _ in loaded[table]["rejects"]:
            lines.append(f"{loaded[table]['path'].name}\t{line}\t{reason}\n")
    path.write_text("".join(lines), encoding="utf-8")
