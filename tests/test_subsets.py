"""Subsets: the paper's rules on explicit rows, determinism, planted overlaps, LifeStages, the
genus-sampled subset."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REAL
from tests.sample_tables import parquet_rows
from workflow_scripts.common import contracts, overlap, taxonomy
from workflow_scripts.common.config import load_config
from workflow_scripts.subsets import check_overlap
from workflow_scripts.subsets.build import SubsetsError, build
from workflow_scripts.subsets.genus_sampled_long_tail import long_tail
from workflow_scripts.subsets.subset_tables import subset_tables

SETTINGS = {
    "min_images": 30,
    "max_images": 40,
    "balanced_species_per_category": 1,
    "balanced_images_per_species": 10,
    "unseen_min_images": 10,
    "test_fraction": 0.2,
    "val_fraction": 0.1,
}
OUTPUTS = (
    "train.parquet",
    "balanced.parquet",
    "unseen.parquet",
    "lifestages.parquet",
    "genus_sampled.parquet",
    "species.parquet",
    "subsets_report.json",
)
CLASS_OF = {
    "Aves": ("Animalia", "Chordata"),
    "Insecta": ("Animalia", "Arthropoda"),
    "Reptilia": ("Animalia", "Chordata"),
    "Mammalia": ("Animalia", "Chordata"),
}


def rows_of(
    species: str,
    count: int,
    klass: str,
    first_id: int,
    observed_on: str = "2023-05-01",
    photos_per_observation: int = 1,
    rank: str = "species",
    name: str | None = None,
) -> list[dict]:
    kingdom, phylum = CLASS_OF[klass]
    genus = species.split()[0]
    return [
        {
            "photo_id": first_id + i,
            "photo_uuid": f"p-{first_id + i}",
            "observation_uuid": f"o-{first_id + i // photos_per_observation}",
            "taxon_rank": rank,
            "scientific_name": name or species,
            "common_name": f"common {species}",
            "kingdom": kingdom,
            "phylum": phylum,
            "class": klass,
            "order": f"O{klass}",
            "family": f"F{genus}",
            "genus": genus,
            "species": species,
            "taxonomic_name": f"{kingdom} {phylum} {klass} O{klass} F{genus} {species}",
            "license": "CC-BY",
            "extension": "jpg",
            "width": 500,
            "height": 375,
            "observed_on": observed_on,
            "taxon_id": first_id,
            "photo_url": f"https://example.org/photos/{first_id + i}/medium.jpg",
        }
        for i in range(count)
    ]


def write_curated(rows: list[dict], path: Path, row_group_size: int = 122880) -> Path:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (SELECT unnest($rows, recursive := true))", {"rows": rows}
    )
    con.execute(
        f"COPY (SELECT * REPLACE (photo_id::BIGINT AS photo_id, observed_on::DATE AS observed_on) "
        f"FROM t) TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE {row_group_size})"
    )
    return path


def explicit_rows() -> list[dict]:
    return (
        rows_of(
            "Aus alba", 100, "Aves", 1_000, photos_per_observation=2
        )  # Balanced + Train (capped)
        + rows_of("Cus dus", 25, "Insecta", 2_000)  # 25 + 5 subspecies: Train
        + rows_of("Cus dus", 5, "Insecta", 2_100, rank="subspecies", name="Cus dus eus")
        + rows_of("Eus grossa", 20, "Reptilia", 3_000)  # same epithet, other genus:
        + rows_of("Fus grossa", 20, "Reptilia", 3_100)  # two Unseen species, not one
        + rows_of("Gus mus", 50, "Mammalia", 4_000)  # no category
        + rows_of("Hus late", 50, "Aves", 5_000, observed_on="2024-02-01")  # after the cutoff
        + rows_of("Jus rara", 5, "Aves", 6_000)  # too few for anything
        + [{**r, "species": None, "taxonomic_name": "x"} for r in rows_of("Kus", 40, "Aves", 7_000)]
    )


def tables(folder: Path) -> list[Path]:
    """The subsets' tables in a subsets folder."""
    return [folder / f"{subset}.parquet" for subset in contracts.SUBSETS]


@pytest.fixture
def explicit(tmp_path):
    curated = write_curated(explicit_rows(), tmp_path / "curated.parquet")
    report = build(curated, tmp_path / "subsets", SETTINGS)
    return report, tmp_path / "subsets"


def test_paper_rules_on_explicit_rows(explicit):
    report, out = explicit
    train, balanced, unseen = (
        parquet_rows(out / f"{s}.parquet") for s in ("train", "balanced", "unseen")
    )
    assert {r["species"] for r in train} == {"Aus alba", "Cus dus"}
    assert sum(r["species"] == "Cus dus" for r in train) == 30  # subspecies rolled up
    assert sum(r["species"] == "Aus alba" for r in train) == 40  # capped at max_images
    assert len(balanced) == 10 and {r["species"] for r in balanced} == {"Aus alba"}
    assert not {r["observation_uuid"] for r in balanced} & {r["observation_uuid"] for r in train}
    assert (
        sorted({r["species"] for r in unseen}) == ["Eus grossa", "Fus grossa"] and len(unseen) == 40
    )
    splits = {}
    for r in train:
        splits.setdefault(r["observation_uuid"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values()) and set().union(*splits.values()) <= {
        "train",
        "val",
        "test",
    }
    assert [r["photo_id"] for r in train] == sorted(r["photo_id"] for r in train)
    assert (
        report["subsets"]["train"]["images"] == 70 and report["subsets"]["unseen"]["species"] == 2
    )
    assert overlap.check(overlap.subset_views(tables(out)))["ok"]


def test_choices_depend_on_ids_and_salt_not_on_file_layout(tmp_path):
    digests = []
    for run, (salt, row_group_size) in enumerate(
        (("biotrove", 122880), ("biotrove", 7), ("other", 7))
    ):
        curated = write_curated(explicit_rows(), tmp_path / f"curated{run}.parquet", row_group_size)
        build(curated, tmp_path / f"out{run}", {**SETTINGS, "salt": salt})
        digests.append(
            {
                f: hashlib.sha256((tmp_path / f"out{run}" / f).read_bytes()).hexdigest()
                for f in OUTPUTS
                if f != "subsets_report.json"
            }
        )
    assert digests[0] == digests[1]
    assert digests[2]["train.parquet"] != digests[0]["train.parquet"]


def test_the_category_rule_says_the_same_in_python_and_in_sql():
    """common.taxonomy writes the rule once: its SQL (which the subsets and the data card run)
    agrees with its Python (the iNat 2021 export's) on every kind of lineage."""
    categories = {"Aves": "class", "Animalia": "kingdom", "Plantae": "kingdom", "Aus": "genus"}
    lineages = [
        {"kingdom": "Animalia", "class": "Aves", "genus": "Aus"},  # in three: the first by name
        {"kingdom": "Animalia", "class": "Insecta"},
        {"kingdom": "Plantae", "class": "Aves"},  # a class of that name, but under Plantae
        {"kingdom": "Fungi"},  # in none: other
        {"kingdom": None, "genus": "Aus"},
        {},
    ]
    con = duckdb.connect()
    for lineage in lineages:
        row = {rank: lineage.get(rank) for rank in taxonomy.RANKS}
        struct = ", ".join(
            f"{taxonomy.column(rank)}: {'NULL' if v is None else repr(v)}::VARCHAR"
            for rank, v in row.items()
        )
        found, first = con.execute(
            f"SELECT {taxonomy.categories_sql(categories, 't')}, "
            f"{taxonomy.category_sql(categories, 't')} FROM (SELECT {{{struct}}} AS t)"
        ).fetchone()
        assert found == taxonomy.categories_of(row, categories), lineage
        assert first == taxonomy.category(row, categories), lineage
    assert taxonomy.category({"kingdom": "Fungi"}, categories) == taxonomy.OTHER


def test_unsorted_curated_or_overlapping_categories_are_refused(tmp_path):
    rows = explicit_rows()
    rows[10], rows[11] = rows[11], rows[10]
    with pytest.raises(
        SubsetsError,
        match=r"row 12: photo_id 1010 after 1011: it must be sorted by unique photo_id",
    ):
        build(write_curated(rows, tmp_path / "unsorted.parquet"), tmp_path / "subsets", SETTINGS)
    overlapping = {"categories": {"Aves": "class", "Animalia": "kingdom"}}
    with pytest.raises(
        SubsetsError,
        match=r"taxon 'Animalia Chordata Aves OAves FAus Aus alba' is in two categories "
        r"\(Animalia and Aves\)",
    ):
        build(
            write_curated(explicit_rows(), tmp_path / "curated.parquet"),
            tmp_path / "subsets",
            {**SETTINGS, **overlapping},
        )
    assert not (tmp_path / "subsets").exists()


OTHER_SPLIT = "CASE WHEN split = 'test' THEN 'train' ELSE 'test' END AS split"


def plant(out: Path, kind: str) -> None:
    """Rewrite one subset file with an overlap of the given kind."""
    con = duckdb.connect()
    target, sql = {
        "photo_id": (
            "balanced",
            "SELECT * FROM b UNION ALL SELECT * EXCLUDE (split) FROM (FROM t LIMIT 1)",
        ),
        "observation_uuid": (
            "unseen",
            "SELECT * FROM u UNION ALL SELECT * EXCLUDE (split) REPLACE "
            "(photo_id + 10 ** 9 AS photo_id) FROM (FROM t LIMIT 1)",
        ),
        "split_observation": (
            "train",
            "SELECT * FROM t UNION ALL SELECT * REPLACE (photo_id + 10 ** 9 AS photo_id, "
            f"{OTHER_SPLIT}) FROM (FROM t LIMIT 1)",
        ),
        "split_photo": (
            "train",
            f"SELECT * FROM t UNION ALL SELECT * REPLACE ({OTHER_SPLIT}) FROM (FROM t LIMIT 1)",
        ),
        "unseen_species": (
            "train",
            "SELECT * FROM t UNION ALL SELECT * REPLACE (observation_uuid || '-x' AS "
            "observation_uuid, photo_id + 10 ** 9 AS photo_id), 'train' AS split "
            "FROM (FROM u LIMIT 1)",
        ),
    }[kind]
    for name, subset in (("t", "train"), ("b", "balanced"), ("u", "unseen")):
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM '{out / f'{subset}.parquet'}'")
    con.execute(f"COPY ({sql}) TO '{out / f'{target}.parquet'}' (FORMAT parquet)")


@pytest.mark.parametrize(
    "kind, check",
    [
        ("photo_id", "photo_id shared"),
        ("observation_uuid", "observation_uuid shared"),
        ("split_observation", "observation_uuid in two train splits"),
        ("split_photo", "photo_id in two train splits"),
        ("unseen_species", "Unseen species in Train"),
    ],
)
def test_each_planted_overlap_fails_the_check_and_is_named(explicit, tmp_path, capsys, kind, check):
    _, out = explicit
    plant(out, kind)
    report_path = tmp_path / "overlap_report.json"
    with pytest.raises(SystemExit) as failed:
        check_overlap.main(["--subsets", *map(str, tables(out)), "--out", str(report_path)])
    assert failed.value.code == 1
    report = json.loads(report_path.read_text())
    assert not report["ok"] and check in {v["check"] for v in report["violations"]}
    assert f"OVERLAP: {check}" in capsys.readouterr().err


def test_lifestages_in_the_authors_format(explicit, tmp_path):
    curated = write_curated(explicit_rows(), tmp_path / "c.parquet")
    report = build(
        curated,
        tmp_path / "out",
        {**SETTINGS, "lifestages": {"export": str(REAL / "biotrove" / "lifestages_metadata.csv")}},
    )
    rows = parquet_rows(tmp_path / "out" / "lifestages.parquet")
    assert report["lifestages_format"] == "authors" and len(rows) == 600
    assert report["subsets"]["lifestages"]["labels"] == 20
    luna = next(r for r in rows if r["scientific_name"] == "Actias luna")
    assert (
        luna["species"] == "Actias luna"
        and luna["label"] == f"North American Luna Moth {luna['life_stage']}"
    )


def test_sample_months_every_subset_non_empty(sample_months):
    for day in ("2024-08-27", "2024-09-27"):
        report = json.loads((sample_months / day / "subsets" / "subsets_report.json").read_text())
        assert all(report["subsets"][s]["images"] > 0 for s in contracts.SUBSETS)
        assert report["subsets"]["lifestages"]["labels"] == 20
        assert overlap.check(overlap.subset_views(tables(sample_months / day / "subsets")))["ok"]


def test_users_filter_keeps_only_species_under_the_given_taxa(tmp_path):
    curated = write_curated(explicit_rows(), tmp_path / "curated.parquet")
    report = build(
        curated, tmp_path / "out", {**SETTINGS, "include": [{"rank": "class", "name": "Insecta"}]}
    )
    assert {r["species"] for r in parquet_rows(tmp_path / "out" / "train.parquet")} == {"Cus dus"}
    assert (
        report["subsets"]["balanced"]["images"] == 0 and report["subsets"]["unseen"]["images"] == 0
    )


def test_tables_3_and_7_and_distribution_plots(explicit, tmp_path):
    _, out = explicit
    subset_tables(tables(out), out / "subsets_report.json", tmp_path / "tables")
    table3 = (tmp_path / "tables" / "table3_train_unique_taxa.csv").read_text().splitlines()
    assert table3[0] == "level,unique in Train,paper (BioTrove-Train)"
    assert table3[1:3] == ["kingdom,1,3", "phylum,2,14"] and table3[7:] == [
        "species,2,33364"
    ]  # no footer
    table7 = (tmp_path / "tables" / "table7_balanced_species.csv").read_text().splitlines()
    assert "Aves,1,10,500" in table7 and "Fungi,0,0,281" in table7
    tex = (tmp_path / "tables" / "table7_balanced_species.tex").read_text()
    assert "\\begin{tabular}{lrrr}" in tex and "Aves & 1 & 10 & 500 \\\\" in tex
    assert sorted(p.name for p in (tmp_path / "tables").glob("*.png")) == [
        f"subset_distribution_{s}.png"
        for s in ("balanced", "genus_sampled", "lifestages", "train", "unseen")
    ]


GENUS = {"genera": 1, "min_species_per_genus": 3, "min_images_per_species": 2}


def genus_rows() -> list[dict]:
    """Genus Mus: four species (60, 12, 3 and 1 images), so three qualify; genus Nus: two species,
    too few."""
    return (
        rows_of("Mus alba", 60, "Aves", 10_000, photos_per_observation=2)
        + rows_of("Mus beta", 12, "Aves", 11_000)
        + rows_of("Mus gamma", 3, "Aves", 12_000)
        + rows_of("Mus delta", 1, "Aves", 13_000)
        + rows_of("Nus alba", 40, "Insecta", 14_000)
        + rows_of("Nus beta", 40, "Insecta", 15_000)
    )


def genus_of(rows: list[dict]) -> set[str]:
    return {r["genus"] for r in rows}


def test_genus_sampled_takes_whole_genera_out_of_the_other_subsets(tmp_path):
    curated = write_curated(explicit_rows() + genus_rows(), tmp_path / "curated.parquet")
    report = build(curated, tmp_path / "out", {**SETTINGS, "genus_sampled": GENUS})
    drawn, train, balanced, unseen = (
        parquet_rows(tmp_path / "out" / f"{s}.parquet")
        for s in ("genus_sampled", "train", "balanced", "unseen")
    )
    assert (
        sorted({r["species"] for r in drawn}) == ["Mus alba", "Mus beta", "Mus gamma"]
        and len(drawn) == 75
    )
    assert "Mus" not in genus_of(train) | genus_of(balanced) | genus_of(
        unseen
    )  # the genus left whole
    assert "Nus" in genus_of(train)  # two species: it did not qualify
    splits = {}
    for r in drawn:
        splits.setdefault(r["observation_uuid"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values()) and set().union(*splits.values()) == {
        "train",
        "val",
        "test",
    }
    assert report["subsets"]["genus_sampled"] | {"per_category": None, "splits": None} == {
        "images": 75,
        "species": 3,
        "per_category": None,
        "splits": None,
        "genera": 1,
        "qualifying_genera": 1,
        "species_below_minimum": {"species": 1, "images": 1},
    }
    status = dict(
        duckdb.sql(
            f"SELECT species_key, status FROM '{tmp_path}/out/species.parquet' "
            "WHERE species_key LIKE '% Mus %'"
        ).fetchall()
    )
    assert sorted(status.values()) == ["genus_sampled"] * 3 + ["genus_sampled_too_few"]
    assert overlap.check(overlap.subset_views(tables(tmp_path / "out")))["ok"]
    none = build(
        curated,
        tmp_path / "none",
        {**SETTINGS, "genus_sampled": {**GENUS, "categories": ["Insecta"]}},
    )
    assert none["subsets"]["genus_sampled"]["images"] == 0 and "Mus" in genus_of(
        parquet_rows(tmp_path / "none" / "train.parquet")
    )


@pytest.mark.parametrize(
    "kind, checks",
    [
        ("genus", ["genus_sampled genus in another subset"]),
        (
            "split",
            [
                "photo_id in two genus_sampled splits",
                "observation_uuid in two genus_sampled splits",
            ],
        ),
    ],
)
def test_planted_genus_sampled_overlaps_fail_the_check(tmp_path, kind, checks):
    curated = write_curated(explicit_rows() + genus_rows(), tmp_path / "curated.parquet")
    build(curated, tmp_path / "out", {**SETTINGS, "genus_sampled": GENUS})
    table = tmp_path / "out" / ("train.parquet" if kind == "genus" else "genus_sampled.parquet")
    planted = {
        "genus": "SELECT * FROM t UNION ALL SELECT * REPLACE (photo_id + 10 ** 9 AS photo_id, "
        "observation_uuid || '-x' AS observation_uuid) FROM (FROM g LIMIT 1)",
        "split": f"SELECT * FROM g UNION ALL SELECT * REPLACE ({OTHER_SPLIT}) "
        f"FROM (FROM g LIMIT 1)",
    }[kind]
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS FROM '{tmp_path / 'out' / 'train.parquet'}'")
    con.execute(f"CREATE TABLE g AS FROM '{tmp_path / 'out' / 'genus_sampled.parquet'}'")
    con.execute(f"COPY ({planted}) TO '{table}' (FORMAT parquet)")
    report = overlap.check(overlap.subset_views(tables(tmp_path / "out")))
    assert not report["ok"] and [v["check"] for v in report["violations"]] == checks


def eligible_genera(curated: Path, subsets: dict) -> duckdb.DuckDBPyRelation:
    """Per genus (lineage) of the curated table's categories: its species with their images before
    the cutoff."""
    categories = " OR ".join(
        f"\"{rank}\" = '{name}'" for name, rank in subsets["categories"].items()
    )
    return duckdb.sql(f"""
        SELECT concat_ws(' ', kingdom, phylum, "class", "order", family, genus) AS genus,
               taxonomic_name AS species,
               count(*) AS images
        FROM read_parquet('{curated}')
        WHERE species IS NOT NULL AND genus IS NOT NULL
              AND observed_on < '{subsets["observed_before"]}' AND ({categories})
        GROUP BY ALL""")


def test_sample_genus_sampled_whole_stable_disjoint_and_long_tailed(sample_months, tmp_path):
    """config.yaml's draw on both sample months: the sample has genera of 3+ look-alike species
    (images.py: one pattern per genus) with a long tail, the drawn genera are whole, the same in
    both months (the draw is by each genus's own hash), and every photo of both keeps its split."""
    subsets = load_config(Path(__file__).parents[1] / "config.yaml")["subsets"]
    drawn, splits = {}, {}
    for day in ("2024-08-27", "2024-09-27"):
        folder = sample_months / day
        curated = folder / "curated" / contracts.CURATED_TABLE
        species = eligible_genera(curated, subsets)
        congeners = species.query(
            "species",
            "SELECT genus, max(images) / min(images) AS spread FROM species "
            "GROUP BY genus HAVING count(*) >= 3",
        ).fetchall()
        assert len(congeners) >= 30 and sum(spread >= 10 for _, spread in congeners) >= 10
        rows = parquet_rows(folder / "subsets" / "genus_sampled.parquet")
        genera = {" ".join(r["taxonomic_name"].split()[:-1]) for r in rows}
        whole = dict(
            species.query(
                "species", "SELECT genus, list(species) FROM species GROUP BY genus"
            ).fetchall()
        )
        whole = {g: set(members) for g, members in whole.items()}
        assert all(
            {r["taxonomic_name"] for r in rows if r["taxonomic_name"].startswith(g + " ")}
            == whole[g]
            for g in genera
        )
        assert all(
            len(whole[g]) >= subsets["genus_sampled"]["min_species_per_genus"] for g in genera
        )
        assert overlap.check(overlap.subset_views(tables(folder / "subsets")))["ok"]
        drawn[day], splits[day] = genera, {r["photo_id"]: r["split"] for r in rows}
        report = json.loads((folder / "subsets" / "subsets_report.json").read_text())["subsets"][
            "genus_sampled"
        ]
        assert report["genera"] == len(genera) >= 5 and set(report["splits"]) == {
            "train",
            "val",
            "test",
        }
    assert drawn["2024-08-27"] == drawn["2024-09-27"]
    both = splits["2024-08-27"].keys() & splits["2024-09-27"].keys()
    assert len(both) > 1000 and all(
        splits["2024-08-27"][p] == splits["2024-09-27"][p] for p in both
    )
    frame = long_tail(curated, folder / "subsets" / "genus_sampled.parquet", tmp_path / "long_tail")
    assert list(frame.table) == ["curated table", "genus_sampled"]
    assert frame["genera with 3+ species (%)"].tolist()[1] == "100.0" and frame.genera.tolist()[
        1
    ] == len(genera)
    assert sorted(p.name for p in (tmp_path / "long_tail").iterdir()) == [
        f"{contracts.LONG_TAIL}{suffix}" for suffix in (".csv", ".md", ".png", ".tex")
    ]
