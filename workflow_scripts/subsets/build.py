"""BioTrove-Train, -Balanced, -Unseen and LifeStages from one curated snapshot (paper section 4),
and the genus-sampled subset (the Pl@ntNet-300K recipe: whole genera drawn by hash).

Writes train.parquet (with `split`: train/val/test), balanced.parquet, unseen.parquet,
lifestages.parquet (with `life_stage` and `label`), genus_sampled.parquet (with `split`), each with
the curated columns and sorted;
species.parquet (each species' size and what the thresholds made of it); subsets_report.json
(images and species per subset and category). The rules are SQL in subsets.sql beside this
module; the settings are config.yaml's `subsets` section (the LifeStages web export among them).
Overlaps between the outputs are checked by workflow_scripts.subsets.check_overlap, its own rule.
"""

from __future__ import annotations

import math
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from workflow_scripts.common import contracts, taxonomy
from workflow_scripts.common.cli import StageError
from workflow_scripts.common.config import settings as subsets_settings
from workflow_scripts.common.duck import quote, run_sql, write_parquet
from workflow_scripts.common.files import building, write_json

HERE = Path(__file__).parent
AUTHORS_COLUMNS = {"inat21_filename", "scientificName", "life_stages", "class_out"}


class SubsetsError(StageError):
    """Input or settings the subsets cannot be built from; the message says what to change."""


def load_lifestages(con: duckdb.DuckDBPyConnection, export: Path | None, settings: dict) -> str:
    """Table lifestages (curated columns + life_stage + label) and lifestage_observations. Reads an
    iNaturalist web export (its life-stage column joined to the curated photo) or the authors'
    lifestages_metadata.csv (taxonomy only: it has no iNaturalist ids). Returns the format read."""
    stages = [s.lower() for s in settings["stages"]]
    con.execute("CREATE OR REPLACE TABLE lifestage_observations (observation_uuid VARCHAR)")
    if export is None:
        con.execute(
            "CREATE OR REPLACE TABLE lifestages AS SELECT *, NULL::VARCHAR AS life_stage, "
            "NULL::VARCHAR AS label FROM curated LIMIT 0"
        )
        return "none"
    try:
        con.execute(
            f"CREATE OR REPLACE TABLE export AS SELECT * FROM read_csv({quote(export)}, "
            f"all_varchar=true, header=true, delim=',', quote='\"', escape='\"')"
        )
    except duckdb.Error as exc:
        raise SubsetsError(f"{export}: cannot read as CSV: {exc}") from exc
    columns = {row[0] for row in con.execute("DESCRIBE export").fetchall()}
    con.execute("SET VARIABLE stages = $v", {"v": stages})
    if AUTHORS_COLUMNS <= columns:
        con.execute("""
            CREATE OR REPLACE TABLE lifestages AS
            SELECT c.* REPLACE (e.scientificName AS scientific_name, e.common_name AS common_name,
                                e.kingdom AS kingdom, e.phylum AS phylum, e."class" AS "class",
                                e."order" AS "order", e.family AS family, e.genus AS genus,
                                e.genus || ' ' || e.species AS species,
                                e.path AS photo_url),
                   e.life_stages AS life_stage, e.common_name || ' ' || e.life_stages AS label
            FROM export AS e LEFT JOIN (SELECT * FROM curated LIMIT 0) AS c ON false
            WHERE lower(e.life_stages) IN (SELECT unnest(getvariable('stages')))""")
        return "authors"
    stage = settings["stage_column"]
    missing = {stage, "uuid", "image_url", "observed_on"} - columns
    if missing:
        raise SubsetsError(
            f"{export}: not a web export with a life-stage column: missing {sorted(missing)} "
            "(set subsets.lifestages.stage_column to the export's column name)"
        )
    con.execute(f"""
        CREATE OR REPLACE TABLE export_rows AS
        SELECT TRY_CAST(regexp_extract(image_url, '/photos/(\\d+)/', 1) AS BIGINT) AS photo_id,
               uuid, trim("{stage}") AS life_stage,
               nullif(trim(common_name), '') AS export_common_name
        FROM export
        WHERE lower(trim("{stage}")) IN (SELECT unnest(getvariable('stages')))
          AND TRY_CAST(observed_on AS DATE) BETWEEN {quote(settings["observed_from"])}::DATE
                                                AND {quote(settings["observed_to"])}::DATE""")
    con.execute("INSERT INTO lifestage_observations SELECT DISTINCT uuid FROM export_rows")
    con.execute("""
        CREATE OR REPLACE TABLE lifestages AS
        SELECT c.*, e.life_stage,
               coalesce(c.common_name, e.export_common_name) || ' ' || e.life_stage AS label
        FROM export_rows AS e JOIN curated AS c USING (photo_id)""")
    return "web export"


def hex_cut(fraction: float) -> str:
    """The 8-hex-digit prefix below which an MD5 falls with this probability: its first 32 bits,
    read as n / 2**32, are < fraction exactly when the prefix is < this (lowercase hex sorts as
    numbers)."""
    cut = math.ceil(fraction * 2**32)
    return "g" if cut >= 2**32 else f"{cut:08x}"  # "g" sorts after every hex prefix


def genus_variables(genus: dict) -> dict:
    """subsets.genus_sampled as subsets.sql's variables: `genera` a fraction (each genus's hash
    against a cut) or a count (the first N in hash order; 0: none)."""
    genera = genus["genera"]
    fraction = isinstance(genera, float) and genera < 1
    return {
        "genus_salt": genus["salt"],
        "genus_min_species": genus["min_species_per_genus"],
        "genus_min_images": genus["min_images_per_species"],
        "genus_cut": hex_cut(genera if fraction else 1),
        "genera_count": 2**62 if fraction else int(genera),
        "genus_test_cut": hex_cut(genus["test_fraction"]),
        "genus_val_cut": hex_cut(genus["test_fraction"] + genus["val_fraction"]),
    }


def build(curated: Path, out: Path, settings: dict | None = None) -> dict:
    """The subsets of one curated table into the folder `out`; `settings`: config.yaml's `subsets`
    section (the schema fills in what it leaves out)."""
    settings = subsets_settings("subsets", settings)
    export = settings["lifestages"]["export"]
    with building(out) as staging:
        return _build_into(staging, curated, settings, Path(export) if export else None)


def _build_into(staging: Path, curated: Path, settings: dict, export: Path | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="subsets-") as spill:
        con = duckdb.connect(
            config={
                "preserve_insertion_order": True,
                "memory_limit": settings["memory_limit"],
                "temp_directory": spill,
            }
        )
        return _build_with(con, staging, curated, settings, export)


def _build_with(
    con: duckdb.DuckDBPyConnection,
    staging: Path,
    curated: Path,
    settings: dict,
    export: Path | None,
) -> dict:
    con.execute(f"CREATE VIEW curated AS SELECT * FROM read_parquet({quote(curated)})")
    for macro in taxonomy.sql_macros(settings["categories"]):
        con.execute(macro)
    genus = settings["genus_sampled"]
    for table, taxa in (
        ("include_taxa", settings["include"]),
        ("genus_include_taxa", genus["include"]),
    ):
        con.execute(f"CREATE TABLE {table} (rank VARCHAR, name VARCHAR)")
        for taxon in taxa:
            con.execute(f"INSERT INTO {table} VALUES (?, ?)", (taxon["rank"], taxon["name"]))
    con.execute(
        "CREATE TABLE genus_categories AS SELECT unnest($names::VARCHAR[]) AS name",
        {"names": genus["categories"]},
    )
    lifestage_format = load_lifestages(con, export, settings["lifestages"])
    for name, value in {
        "salt": settings["salt"],
        "observed_before": settings["observed_before"],
        "min_images": settings["min_images"],
        "max_images": settings["max_images"],
        "balanced_species": settings["balanced_species_per_category"],
        "balanced_images": settings["balanced_images_per_species"],
        "unseen_min": settings["unseen_min_images"],
        "test_cut": hex_cut(settings["test_fraction"]),
        "val_cut": hex_cut(settings["test_fraction"] + settings["val_fraction"]),
        **genus_variables(genus),
    }.items():
        con.execute(f"SET VARIABLE {name} = $value", {"value": value})
    run_sql(con, HERE / "subsets.sql")
    ambiguous = con.execute(
        "SELECT any_value(species_key), string_agg(category, ' and ' ORDER BY category) "
        "FROM taxon_species GROUP BY taxon_id HAVING count(*) > 1 ORDER BY 1, taxon_id LIMIT 1"
    ).fetchone()
    if ambiguous:
        raise SubsetsError(
            f"{curated}: taxon {ambiguous[0]!r} is in two categories ({ambiguous[1]}): "
            "subsets.categories must not overlap (nor one taxon carry two lineages)"
        )
    with ThreadPoolExecutor(
        1
    ) as pool:  # a positional join runs on one thread: the rest runs beside it
        train = pool.submit(
            write_parquet,
            con.cursor(),
            "SELECT c.*, t.split FROM curated AS c POSITIONAL JOIN "
            "train_positions AS t WHERE t.split IS NOT NULL",
            staging / contracts.subset_file("train"),
        )
        check_photo_order(con, curated)
        report = _write_the_rest(con, staging, settings, lifestage_format)
        train.result()
    return report


def check_photo_order(con: duckdb.DuckDBPyConnection, curated: Path) -> None:
    """Train keeps curated's row order (train_positions in subsets.sql), so that must be photo_id
    order."""
    disorder = con.execute(
        "SELECT row, previous, photo_id FROM (SELECT photo_id, row_number() OVER () AS row, "
        "lag(photo_id) OVER () AS previous FROM curated) WHERE photo_id <= previous LIMIT 1"
    ).fetchone()
    if disorder:
        raise SubsetsError(
            f"{curated}: row {disorder[0]}: photo_id {disorder[2]} after {disorder[1]}: it must be "
            "sorted by unique photo_id, as the curate stage writes it"
        )


def genus_report(con: duckdb.DuckDBPyConnection) -> dict:
    """The genera drawn, of those that qualified, and the drawn genera's species below the minimum:
    in no subset."""
    genera, qualifying = con.execute(
        "SELECT (SELECT count(*) FROM sampled_genera), count(*) FROM qualifying_genera"
    ).fetchone()
    species, images = con.execute(
        "SELECT count(*), coalesce(sum(images), 0) FROM species_images SEMI JOIN "
        "(SELECT species FROM genus_sampled_species WHERE NOT kept) USING (species)"
    ).fetchone()
    return {
        "genera": genera,
        "qualifying_genera": qualifying,
        "species_below_minimum": {"species": species, "images": int(images)},
    }


def _write_the_rest(
    con: duckdb.DuckDBPyConnection, staging: Path, settings: dict, lifestage_format: str
) -> dict:
    """Balanced, Unseen, LifeStages, genus_sampled, species.parquet and subsets_report.json."""
    write_parquet(
        con,
        "SELECT * FROM curated SEMI JOIN balanced_photos USING (photo_id) ORDER BY photo_id",
        staging / contracts.subset_file("balanced"),
    )
    write_parquet(
        con,
        "SELECT * FROM curated SEMI JOIN unseen_photos USING (photo_id) ORDER BY photo_id",
        staging / contracts.subset_file("unseen"),
    )
    write_parquet(
        con,
        "SELECT * FROM lifestages ORDER BY photo_id, label, photo_url",
        staging / contracts.subset_file("lifestages"),
    )
    write_parquet(
        con,
        "SELECT c.*, g.split FROM curated AS c JOIN genus_sampled_photos AS g USING (photo_id) "
        "ORDER BY photo_id",
        staging / contracts.subset_file(contracts.GENUS_SAMPLED),
    )
    report = {"settings": settings, "lifestages_format": lifestage_format, "subsets": {}}
    for subset, members in (
        ("train", "train_photos"),
        ("balanced", "balanced_photos"),
        ("unseen", "unseen_photos"),
        (contracts.GENUS_SAMPLED, "genus_sampled_photos"),
    ):
        per_category = con.execute(f"""
            SELECT s.category, count(*), count(DISTINCT species)
            FROM {members} JOIN species_images AS s USING (species)
            GROUP BY 1 ORDER BY 1""").fetchall()
        report["subsets"][subset] = {
            "images": sum(r[1] for r in per_category),
            "species": sum(r[2] for r in per_category),
            "per_category": {r[0]: {"images": r[1], "species": r[2]} for r in per_category},
        }
    for subset, members in (
        ("train", "train_photos"),
        (contracts.GENUS_SAMPLED, "genus_sampled_photos"),
    ):
        report["subsets"][subset]["splits"] = dict(
            con.execute(f"SELECT split, count(*) FROM {members} GROUP BY 1 ORDER BY 1").fetchall()
        )
    report["subsets"][contracts.GENUS_SAMPLED] |= genus_report(con)
    labels = con.execute("SELECT count(*), count(DISTINCT label) FROM lifestages").fetchone()
    report["subsets"]["lifestages"] = {"images": labels[0], "labels": labels[1]}
    if lifestage_format == "web export":
        report["subsets"]["lifestages"]["export_rows_not_curated"] = con.execute(
            "SELECT count(*) FROM export_rows ANTI JOIN curated USING (photo_id)"
        ).fetchone()[0]
    report["withheld_for_balanced"] = con.execute(
        "SELECT count(*) FROM eligible AS e JOIN species_sizes AS s USING (species) "
        "WHERE s.images >= getvariable('min_images') AND e.observation_uuid IN "
        "(SELECT observation_uuid FROM balanced_photos) AND e.photo_id NOT IN "
        "(SELECT photo_id FROM balanced_photos)"
    ).fetchone()[0]
    write_parquet(
        con, "SELECT * FROM species_status ORDER BY species_key", staging / contracts.SPECIES_TABLE
    )
    write_json(staging / contracts.SUBSETS_REPORT, report)
    return report
