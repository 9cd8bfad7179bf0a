"""The data side of the monthly diff: both months' raw tables (read as curation reads them), curated
tables and subsets in one DuckDB database, compared by diff.sql (species, inactive taxa, deleted
photos, license changes, benchmarks), stability.sql (every photo that changed subset or split, with
the reason) and summary.sql (what the report shows of them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb

from workflow_scripts.common import contracts, inat_format
from workflow_scripts.common.benchmarks import SUBSET_BENCHMARKS
from workflow_scripts.common.config import settings
from workflow_scripts.common.duck import quote, run_sql, write_parquet
from workflow_scripts.common.raw_tables import CurateError, find_table, load_table

HERE = Path(__file__).parent
RAW_TABLES = ("photos", "observations", "taxa")
# each Parquet list's sort key (a total order: the same bytes on every run)
LIST_ORDER = {
    "species_images": "species_key",
    "inactivated_taxa": "taxon_id, replaced_by_id NULLS FIRST",
    "deleted_photos": "photo_id, observation_uuid",
    "license_changes": "photo_id, observation_uuid",
    "moved": "photo_id",
    "benchmark_species": "benchmark, species_key",
}


@dataclass(frozen=True)
class Month:
    """What the diff reads of one snapshot: its date, its raw tables' folder (raw/), its curated
    table, its species table and every subset's table ({subset: table},
    contracts.subsets_by_name())."""

    date: str
    raw: Path
    curated: Path
    species: Path
    subsets: dict[str, Path]

    def files(self) -> list[Path]:
        return [self.raw, self.curated, self.species, *self.subsets.values()]


def load_raw(
    raw: Path, day: str, database: Path, workdir: Path, earliest_year: int | None = None
) -> dict:
    """The raw tables of the month of `day` into a DuckDB file (large months spill to disk), as
    curation reads them (its earliest observation year: `earliest_year`, default the schema's);
    rows read and rejected."""
    earliest = earliest_year or settings("curate")["earliest_observation_year"]
    plausible = inat_format.Plausible(earliest, date.fromisoformat(day))
    con = duckdb.connect(str(database))
    counts = {}
    for table in RAW_TABLES:
        path = find_table(raw, table)
        if path is None:
            raise CurateError(f"{raw}: no {table}.csv.gz or {table}.csv: fetch the snapshot first")
        loaded = load_table(con, table, path, workdir, plausible)
        counts[table] = {"rows": loaded["rows"], "rejected": len(loaded["rejects"])}
    con.close()
    return counts


def attach_snapshot(con: duckdb.DuckDBPyConnection, side: str, month: Month) -> None:
    """Views <side>_curated, <side>_species, <side>_placements (photo_id, subset, split) and
    <side>_benchmarks (benchmark, photo_id, species_key; Train's benchmark is its test split)."""
    con.execute(f"CREATE VIEW {side}_curated AS SELECT * FROM read_parquet({quote(month.curated)})")
    con.execute(f"CREATE VIEW {side}_species AS SELECT * FROM read_parquet({quote(month.species)})")
    parts = [
        f"SELECT photo_id, {quote(subset)} AS subset, "
        f"{'split' if subset in contracts.SPLIT_SUBSETS else 'NULL'} AS split "
        f"FROM read_parquet({quote(month.subsets[subset])}) WHERE photo_id IS NOT NULL"
        for subset in contracts.SUBSETS
    ]
    con.execute(f"CREATE VIEW {side}_placements AS {' UNION ALL '.join(parts)}")
    parts = [
        f"SELECT {quote(name)} AS benchmark, photo_id, taxonomic_name AS species_key "
        f"FROM read_parquet({quote(month.subsets[name])}) WHERE photo_id IS NOT NULL"
        + (f" AND split = {quote(split)}" if split else "")
        for name, (split, _) in SUBSET_BENCHMARKS.items()
    ]
    con.execute(f"CREATE VIEW {side}_benchmarks AS {' UNION ALL '.join(parts)}")


def rows(con: duckdb.DuckDBPyConnection, table: str) -> list[dict]:
    """A summary table's rows (written with a total order) as dicts."""
    relation = con.table(table)
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def data_diff(con: duckdb.DuckDBPyConnection, out: Path) -> dict:
    """Run the diff's SQL, write the lists into `out`, and return the summary of the data changes.
    `con` has the raw tables of each month attached as prev and cur, and each month's views
    (attach_snapshot)."""
    for name in ("diff.sql", "stability.sql", "summary.sql"):
        run_sql(con, HERE / name)
    for table in contracts.DIFF_LISTS:
        write_parquet(
            con, f"SELECT * FROM {table} ORDER BY {LIST_ORDER[table]}", out / f"{table}.parquet"
        )
    (species,), (deleted,), (stability,) = (
        rows(con, t) for t in ("species_summary", "deleted_summary", "stability_summary")
    )
    return {
        "species": species,
        "categories": rows(con, "categories_summary"),
        "inactivated_taxa": rows(con, "inactivated_summary"),
        "deleted_photos": deleted,
        "license_changes": {
            "photos": sum(r["photos"] for r in rows(con, "license_summary")),
            "by_change": rows(con, "license_summary"),
        },
        "split_stability": {
            **stability,
            "by_reason": {r["reason"]: r["photos"] for r in rows(con, "moved_by_reason")},
        },
        "benchmarks": {r.pop("benchmark"): r for r in rows(con, "benchmark_summary")},
        "moved": rows(con, "moved_in_order"),
    }
