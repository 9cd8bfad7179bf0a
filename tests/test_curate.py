"""Curation: real samples to hand-checked results, every rule and quirk on small explicit inputs."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REAL, REPO
from tests.sample_tables import bundle_tables, parquet_rows, tiled_snapshot
from workflow_scripts.common import drop_reasons
from workflow_scripts.common.contracts import TAXONOMY_ARCHIVE
from workflow_scripts.common.inat_format import (
    COLUMNS,
    SYNTAX,
    VALUE_RULES,
    Plausible,
    value_problem,
)
from workflow_scripts.common.taxonomy import RANKS
from workflow_scripts.curate.stage import CurateError, curate

DWCA_REAL = REAL / "inat-taxonomy-dwca-pyinat"
URL = "https://inaturalist-open-data.s3.amazonaws.com/photos"
LOOSE = {
    "drop_limits": {"other": 1.0}
}  # a few hand-written rows: any reason may take a large share


def balanced(report: dict) -> bool:
    return report["photos_in"] == report["photos_out"] + sum(report["dropped"].values())


# -- real files ---------------------------------------------------------------------------------
def test_real_2022_06_sample_to_hand_checked_result(tmp_path):
    report = curate(
        REAL / "inat-open-data-2022-06",
        tmp_path / "out",
        LOOSE,
        snapshot="2022-06-27",
        taxonomy=DWCA_REAL,
    )
    # checked by hand: 10 photo_ids sit on two observations; 4 of them on two research-grade
    # observations of different taxa (8 rows dropped), 5 keep their one research-grade row
    assert report["photos_in"] == 37 and report["photos_out"] == 12
    assert report["dropped"] == {"conflicting_labels": 8, "license": 1, "quality_grade": 16}
    kept = parquet_rows(tmp_path / "out" / "curated.parquet")
    assert [r["photo_id"] for r in kept] == [
        10314159,
        20314159,
        30314159,
        60314159,
        130314159,
        150314159,
        160314159,
        190995604,
        190995656,
        191015484,
        191015547,
        191016506,
    ]
    lantana = next(r for r in kept if r["photo_id"] == 191015484)
    assert (lantana["scientific_name"], lantana["kingdom"], lantana["species"]) == (
        "Lantana camara",
        "Plantae",
        "Lantana camara",
    )
    assert (
        lantana["observation_uuid"] == "9ed0cc10-2f8c-4d0e-b0eb-caac3dcafaa6"
    )  # the research-grade one
    assert all(r["snapshot"].isoformat() == "2022-06-27" for r in kept)


def test_real_older_schema_with_extra_fields(tmp_path):
    """Two of its observation rows carry a ninth, non-empty field (a date after an empty one): never
    read by position, they are rejected with their lines. Its taxa are an excerpt without their
    ancestors: every row rejected, counted once, no photo kept."""
    report = curate(
        REAL / "inat-open-data-pyinat",
        tmp_path / "out",
        {**LOOSE, "allow_empty": True},
        snapshot="2021-06-01",
        taxonomy=DWCA_REAL,
    )
    assert report["older_schema_without_anomaly_score"] is True
    assert report["extra_field_rows"]["observations"] == 0
    assert report["rows_read"] == {"observations": 48, "photos": 50, "taxa": 0}
    assert report["rejected_rows"] == {"observations": 2, "photos": 0, "taxa": 50}
    rejects = (tmp_path / "out" / "rejects.csv").read_text().splitlines()
    assert rejects[1:3] == [f"observations.csv\t{line}\t9 fields, expected 8" for line in (27, 28)]
    assert report["photos_in"] == 50 and balanced(report)
    assert report["dropped"] == {
        "observation_rejected": 2,
        "quality_grade": 9,
        "taxon_missing_from_taxa": 39,
    }


# -- small explicit inputs ----------------------------------------------------------------------
TAXA = [  # id, ancestry, level, rank, name, active
    (48460, "", 100, "stateofmatter", "Life", "true"),
    (1, "48460", 70, "kingdom", "Animalia", "true"),
    (47126, "48460", 70, "kingdom", "Plantae", "true"),
    (47686, "48460", 70, "kingdom", "Protozoa", "true"),
    (2, "48460/1", 60, "phylum", "Chordata", "true"),
    (3, "48460/1/2", 50, "class", "Aves", "true"),
    (10, "48460/1/2/3", 40, "order", "Passeriformes", "true"),
    (11, "48460/1/2/3/10", 30, "family", "Parulidae", "true"),
    (12, "48460/1/2/3/10/11", 20, "genus", "Setophaga", "true"),
    (13, "48460/1/2/3/10/11/12", 10, "species", "Setophaga petechia", "true"),
    (14, "48460/1/2/3/10/11/12/13", 5, "subspecies", "Setophaga petechia aestiva", "true"),
    (15, "48460/1/2/3/10/11/12", 10, "species", "Setophaga ruticilla", "false"),
    (20, "48460/47126", 60, "phylum", "Tracheophyta", "true"),
    (21, "48460/47126/20", 50, "class", "Magnoliopsida", "true"),
    (22, "48460/47126/20/21", 40, "order", "Fagales", "true"),
    (23, "48460/47126/20/21/22", 30, "family", "Fagaceae", "true"),
    (24, "48460/47126/20/21/22/23", 27, "subfamily", "Quercoideae", "true"),
    (25, "48460/47126/20/21/22/23/24", 20, "genus", "Quercus", "true"),
    (26, "48460/47126/20/21/22/23/24/25", 13, "section", "Quercus sect. Lobatae", "true"),
    (27, "48460/47126/20/21/22/23/24/25/26", 10, "species", "Quercus rubra", "true"),
    (28, "48460/47126/20/21/22/23/24/25", 10, "hybrid", "Quercus × bebbiana", "true"),
    (30, "48460/47686", 60, "phylum", "Mycetozoa", "true"),
    (31, "48460/47686/30", 10, "species", 'Physarum "sp-IN01"', "true"),
    (40, "48460/47126/20/21/22/23/24/25", 10, "species", 'Quercus "o\'hara" Núñez', "true"),
]


def uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def write_snapshot(
    folder: Path,
    observations: list[tuple],
    photos: list[tuple],
    taxa=TAXA,
    old_schema: bool = False,
    gz: bool = True,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    obs_columns = COLUMNS["observations"][:-1] if old_schema else COLUMNS["observations"]
    tables = {
        "observations": (obs_columns, observations),
        "photos": (COLUMNS["photos"], photos),
        "taxa": (COLUMNS["taxa"], taxa),
    }
    for table, (columns, data) in tables.items():
        text = "\t".join(columns) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in data)
        if gz:
            (folder / f"{table}.csv.gz").write_bytes(gzip.compress(text.encode()))
        else:  # a lone surrogate escape (\udcff) is written as that byte (0xff): not UTF-8
            (folder / f"{table}.csv").write_bytes(text.encode("utf-8", "surrogateescape"))
    return folder


def write_dwca(folder: Path, rows: list[tuple]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    header = "id,vernacularName,language,locality,countryCode,source,lexicon,contributor,created\n"
    body = "".join(
        f'{i},"{name.replace(chr(34), chr(34) * 2)}",en,"","",src,English,,{created}\n'
        for i, name, created in rows
    )
    (folder / "VernacularNames-english.csv").write_text(header + body, encoding="utf-8")
    return folder


def obs(n: int, taxon: int | str, grade: str = "research", observed: str = "2020-05-01") -> tuple:
    return (uuid(n), 7, "10.5", "-3.25", "", taxon, grade, observed, "0.01")


def photo(photo_id: int, n: int, license_: str = "CC-BY", ext: str = "jpg") -> tuple:
    return (uuid(1000 + photo_id), photo_id, uuid(n), 7, ext, license_, 2048, 1536, 0)


@pytest.fixture
def small(tmp_path):
    observations = [
        obs(1, 13),
        obs(2, 14),
        obs(3, 13, "needs_id"),
        obs(4, 13, "casual"),
        obs(5, 15),
        obs(6, 999),
        obs(7, 31),
        obs(8, 27),
        obs(9, 28),
        obs(10, 12),
        obs(11, 40),
        obs(12, 13, observed=""),
        obs(20, 13),
        obs(21, 13),
        obs(22, 27),
        obs(23, 13),
        obs(24, 13, "needs_id"),
    ]
    photos = [
        photo(101, 1, ext="JPG"),
        photo(102, 2, "CC0", "jpeg"),
        photo(103, 3),
        photo(104, 4),
        photo(105, 5),
        photo(106, 6),
        photo(107, 7),
        photo(108, 8, "CC-BY-NC", "png"),
        photo(109, 9),
        photo(110, 10),
        photo(111, 11),
        photo(112, 12),
        photo(113, 99),  # 113: its observation is not in the table
        photo(114, 1, "CC-BY-SA"),
        photo(115, 1, "CC-BY-NC-ND"),
        photo(116, 1, "PD"),
        photo(200, 21),
        photo(200, 20),  # same photo, two observations, same taxon: keep obs 20
        photo(201, 23),
        photo(201, 22),  # same photo, different taxa: drop both
        photo(202, 23),
        photo(202, 24),  # second observation not research grade: not a conflict
    ]
    snapshot = write_snapshot(tmp_path / "snap", observations, photos)
    dwca = write_dwca(
        tmp_path / "dwca",
        [
            (13, "Yellow Warbler", "2009-01-01T00:00:00Z"),
            (13, "American Yellow Warbler", "2012-01-01T00:00:00Z"),
            (27, "Red Oak", "2010-01-01T00:00:00Z"),
            (27, "Northern Red Oak", "2010-01-01T00:00:00Z"),
            (40, "O'Hara's \"odd\" oak", "2015-01-01T00:00:00Z"),
        ],
    )
    report = curate(snapshot, tmp_path / "out", LOOSE, snapshot="2024-09-27", taxonomy=dwca)
    return (
        report,
        {r["photo_id"]: r for r in parquet_rows(tmp_path / "out" / "curated.parquet")},
        tmp_path,
    )


def test_every_rule_on_explicit_rows(small):
    report, kept, _ = small
    assert sorted(kept) == [101, 102, 108, 109, 110, 111, 112, 200, 202]
    assert report["dropped"] == {
        "conflicting_labels": 2,
        "duplicate_photo": 1,
        "kingdom": 1,
        "license": 3,
        "observation_missing": 1,
        "quality_grade": 3,
        "taxon_inactive": 1,
        "taxon_missing_from_taxa": 1,
    }
    assert balanced(report) and report["photos_in"] == 22
    assert kept[200]["observation_uuid"] == uuid(20)  # the smallest observation_uuid
    assert kept[202]["observation_uuid"] == uuid(23)


def test_ranks_species_and_names(small):
    _, kept, _ = small
    warbler, subspecies, oak, hybrid, genus = kept[101], kept[102], kept[108], kept[109], kept[110]
    assert (
        warbler["kingdom"],
        warbler["phylum"],
        warbler["class"],
        warbler["order"],
        warbler["family"],
        warbler["genus"],
        warbler["species"],
    ) == (
        "Animalia",
        "Chordata",
        "Aves",
        "Passeriformes",
        "Parulidae",
        "Setophaga",
        "Setophaga petechia",
    )
    assert (
        warbler["taxonomic_name"]
        == "Animalia Chordata Aves Passeriformes Parulidae Setophaga petechia"
    )
    assert (subspecies["taxon_rank"], subspecies["scientific_name"], subspecies["species"]) == (
        "subspecies",
        "Setophaga petechia aestiva",
        "Setophaga petechia",
    )  # the full name, never the epithet
    assert (
        oak["taxonomic_name"] == "Plantae Tracheophyta Magnoliopsida Fagales Fagaceae Quercus rubra"
    )
    assert (hybrid["taxon_rank"], hybrid["species"], hybrid["genus"]) == ("hybrid", None, "Quercus")
    assert (genus["taxon_rank"], genus["species"]) == ("genus", None)
    assert (
        kept[111]["scientific_name"] == 'Quercus "o\'hara" Núñez'
    )  # quotes and non-ASCII, byte for byte


def test_common_names_rule(small):
    _, kept, _ = small
    assert kept[101]["common_name"] == "Yellow Warbler"  # the oldest of two
    assert kept[108]["common_name"] == "Northern Red Oak"  # same date: alphabetical
    assert kept[111]["common_name"] == "O'Hara's \"odd\" oak"
    assert kept[102]["common_name"] is None  # the subspecies has no name of its own


def test_columns_types_and_url(small):
    report, kept, tmp_path = small
    described = duckdb.sql(
        f"DESCRIBE SELECT * FROM '{tmp_path / 'out' / 'curated.parquet'}'"
    ).fetchall()
    assert [(c[0], c[1]) for c in described] == [
        ("photo_id", "BIGINT"),
        ("photo_uuid", "VARCHAR"),
        ("observation_uuid", "VARCHAR"),
        ("taxon_id", "BIGINT"),
        ("taxon_rank", "VARCHAR"),
        ("scientific_name", "VARCHAR"),
        ("common_name", "VARCHAR"),
        ("kingdom", "VARCHAR"),
        ("phylum", "VARCHAR"),
        ("class", "VARCHAR"),
        ("order", "VARCHAR"),
        ("family", "VARCHAR"),
        ("genus", "VARCHAR"),
        ("species", "VARCHAR"),
        ("taxonomic_name", "VARCHAR"),
        ("license", "VARCHAR"),
        ("extension", "VARCHAR"),
        ("width", "INTEGER"),
        ("height", "INTEGER"),
        ("observed_on", "DATE"),
        ("latitude", "DOUBLE"),
        ("longitude", "DOUBLE"),
        ("positional_accuracy", "BIGINT"),
        ("anomaly_score", "DOUBLE"),
        ("photo_url", "VARCHAR"),
        ("snapshot", "DATE"),
    ]
    columns = [c[0] for c in described]
    assert tuple(columns[columns.index(RANKS[0]) :][: len(RANKS)]) == RANKS  # the lineage columns
    assert kept[101]["extension"] == "JPG" and kept[101]["photo_url"] == f"{URL}/101/medium.JPG"
    assert kept[112]["observed_on"] is None
    assert report["curated_taxa_without_common_name"] == 3  # 12 (genus), 14, 28


def test_every_drop_reason_curation_can_give_has_its_meaning():
    """curate.sql's reasons and the loader's (a photo row it cannot parse, or its first invalid
    column) are the ones the data card explains, no more, no fewer."""
    decided = re.findall(
        r"(?:THEN|ELSE) '(\w+)'", (REPO / "workflow_scripts/curate/curate.sql").read_text()
    )
    assert set(decided) == set(drop_reasons.DECIDED)
    checked = [c for c in COLUMNS["photos"] if c in SYNTAX or c in VALUE_RULES]
    loader = [
        drop_reasons.UNPARSEABLE,
        drop_reasons.CONFLICTING_PHOTO,
        *(drop_reasons.invalid(c) for c in checked),
    ]
    assert set(drop_reasons.MEANINGS) == {*decided, *loader}
    assert all(drop_reasons.meaning(reason) for reason in [*decided, *loader])


def test_older_schema_and_extra_field_and_invalid_rows(tmp_path):
    """One extra trailing empty field is read by the first columns; a row with any other field
    count, or a value that breaks a rule, is rejected with its line (never read by position)."""
    observations = [
        obs(1, 13)[:-1],
        obs(2, 27)[:-1] + ("",),
        obs(3, 27)[:-1] + ("surplus",),
        ("not-a-uuid", 7, "x", "", "", 13, "research", "2020-01-01"),
    ]
    photos = [photo(n, n) for n in (1, 2, 3)] + [("u", "abc", uuid(1), 7, "jpg", "CC0", 1, 1, 0)]
    snapshot = write_snapshot(tmp_path / "snap", observations, photos, old_schema=True, gz=False)
    report = curate(
        snapshot,
        tmp_path / "out",
        LOOSE,
        taxonomy=write_dwca(tmp_path / "dwca", []),
        snapshot="2021-01-01",
    )
    assert report["older_schema_without_anomaly_score"] is True
    assert report["extra_field_rows"]["observations"] == 1
    assert report["rejected_rows"] == {"observations": 2, "photos": 1, "taxa": 0}
    assert report["dropped"]["invalid_photo_uuid"] == 1  # a value: its first bad column
    assert report["dropped"]["observation_rejected"] == 1 and balanced(report)
    assert (tmp_path / "out" / "rejects.csv").read_text().splitlines() == [
        "file\tline\treason",
        "observations.csv\t4\t9 fields, expected 8",
        "observations.csv\t5\tobservation_uuid='not-a-uuid' is not a valid observation_uuid: "
        "a lower-case hyphenated UUID",
        "photos.csv\t5\tphoto_uuid='u' is not a valid photo_uuid: a lower-case hyphenated UUID",
    ]
    kept = parquet_rows(tmp_path / "out" / "curated.parquet")
    assert [r["photo_id"] for r in kept] == [1, 2] and all(r["anomaly_score"] is None for r in kept)


@pytest.mark.parametrize(
    "fault, message",
    [
        ("missing_column", "header is not the photos schema: missing columns ['license']"),
        ("empty", "empty file"),
        ("truncated_gz", "truncated or corrupt file"),
        ("corrupt_gz", "truncated or corrupt file"),
        ("truncated_plain", "truncated file"),
    ],
)
def test_bad_input_is_a_clear_error_and_no_output(tmp_path, fault, message):
    snapshot = write_snapshot(
        tmp_path / "snap", [obs(1, 13)], [photo(1, 1)] * 3, gz=fault != "truncated_plain"
    )
    target = snapshot / ("photos.csv" if fault == "truncated_plain" else "photos.csv.gz")
    data = gzip.decompress(target.read_bytes()) if target.suffix == ".gz" else target.read_bytes()
    if fault == "missing_column":
        data = b"\n".join(
            b"\t".join(f for i, f in enumerate(line.split(b"\t")) if i != 5)
            for line in data.split(b"\n")
        )
    elif fault == "empty":
        data = b""
    if fault == "truncated_plain":
        target.write_bytes(data[:-5])
    elif fault == "truncated_gz":
        target.write_bytes(gzip.compress(data * 200)[:-300])
    elif fault == "corrupt_gz":
        packed = bytearray(gzip.compress(data * 200))
        packed[len(packed) // 2] ^= 0xFF
        target.write_bytes(packed)
    else:
        target.write_bytes(gzip.compress(data))
    with pytest.raises(CurateError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        curate(
            snapshot,
            tmp_path / "out",
            taxonomy=write_dwca(tmp_path / "dwca", []),
            snapshot="2021-01-01",
        )
    assert str(target) in str(error.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


@pytest.mark.parametrize(
    "fault, message",
    [
        ("bom", "byte-order mark"),
        ("crlf", "Windows (CRLF) line endings"),
        ("commas", "comma-separated"),
        ("plain_named_gz", "named .gz but not gzip-compressed"),
        ("gz_named_plain", "gzip-compressed but not named .gz: rename it to photos.csv.gz"),
    ],
)
def test_a_wrong_file_form_is_named_with_what_to_do(tmp_path, fault, message):
    snapshot = write_snapshot(tmp_path / "snap", [obs(1, 13)], [photo(1, 1)], gz=False)
    target = snapshot / "photos.csv"
    data = target.read_bytes()
    forms = {
        "bom": b"\xef\xbb\xbf" + data,
        "crlf": data.replace(b"\n", b"\r\n"),
        "commas": data.replace(b"\t", b","),
        "plain_named_gz": data,
        "gz_named_plain": gzip.compress(data),
    }
    if fault == "plain_named_gz":
        target.unlink()
        target = target.with_name("photos.csv.gz")
    target.write_bytes(forms[fault])
    with pytest.raises(CurateError, match=re.escape(message)) as error:
        curate(
            snapshot,
            tmp_path / "out",
            LOOSE,
            taxonomy=write_dwca(tmp_path / "dwca", []),
            snapshot="2021-01-01",
        )
    assert str(target) in str(error.value)


def test_bad_values_are_counted_drops_with_file_and_line(tmp_path):
    """Values the format rules refuse (inat_format.VALUE_RULES, ancestry links) never reach the
    table: each rejected row is in rejects.csv with its line, and its photos are dropped under that
    cause."""
    taxa = [t for t in TAXA if t[0] not in (12, 13)] + [
        (
            12,
            "48460/1/2/3/10/11/13",
            20,
            "genus",
            "Setophaga",
            "true",
        ),  # a cycle with its own species
        (13, "48460/1/2/3/10/11/12", 10, "species", "Setophaga petechia", "true"),
        (
            50,
            "48460/47126/20/2x1",
            10,
            "species",
            "Quercus alba",
            "true",
        ),  # not an id in the ancestry
        (
            51,
            "48460/47126/20/51",
            10,
            "species",
            "Quercus velutina",
            "true",
        ),  # itself among its ancestors
        (52, "48460/47126/20/21/22/23/24/25", 10, "species", "Quercus \udcff", "true"),  # not UTF-8
        (53, "48460/47126/20/21/22/23/24/25/52", 5, "variety", "Quercus nova var. x", "true"),
        (
            54,
            "48460/47126/20/21/22/23/24/25",
            10,
            "species",
            "Q" * 600,
            "true",
        ),  # longer than a name is
    ]
    observations = [
        obs(1, 12),
        obs(2, 13),
        obs(3, 50),
        obs(4, 51),
        obs(5, 52),
        obs(6, 53),
        obs(7, 54),
        obs(8, 27),
        (
            "00000000-0000-4000-8000-000000000009",
            7,
            "95.0",
            "0",
            "",
            27,
            "research",
            "2020-05-01",
            "0.1",
        ),
        obs(10, 27),
    ]
    photos = [photo(n, n) for n in range(1, 11)] + [
        photo(11, 10, ext="x" * 200_000),
        photo(12, 10, "CC-BY-4.0"),
    ]
    snapshot = write_snapshot(tmp_path / "snap", observations, photos, taxa=taxa, gz=False)
    report = curate(
        snapshot,
        tmp_path / "out",
        LOOSE,
        taxonomy=write_dwca(tmp_path / "dwca", []),
        snapshot="2024-09-27",
    )
    kept = {r["photo_id"]: r for r in parquet_rows(tmp_path / "out" / "curated.parquet")}
    assert sorted(kept) == [8, 10] and balanced(report)
    assert report["dropped"] == {
        "ancestor_rejected": 1,
        "invalid_extension": 1,
        "invalid_license": 1,
        "observation_rejected": 1,
        "taxon_rejected": 6,
    }
    assert report["rejected_rows"] == {"observations": 1, "photos": 2, "taxa": 6}
    rejects = [
        line.split("\t") for line in (tmp_path / "out" / "rejects.csv").read_text().splitlines()[1:]
    ]
    lines = {(file, int(line)): reason for file, line, reason in rejects}
    taxa_line = {t[0]: n + 2 for n, t in enumerate(taxa)}
    assert lines[("observations.csv", 10)] == (
        "latitude='95.0' is not a valid latitude: from -90 to 90"
    )
    assert (
        lines[("photos.csv", 12)].startswith("extension='xxxx")
        and "(200000 characters)" in lines[("photos.csv", 12)]
        and len(lines[("photos.csv", 12)]) < 200
    )
    assert lines[("photos.csv", 13)] == (
        "license='CC-BY-4.0' is not a valid license: a license code"
    )
    assert lines[("taxa.csv", taxa_line[12])] == "ancestry cycle: 13 lists 12 among its ancestors"
    assert lines[("taxa.csv", taxa_line[13])] == "ancestry cycle: 12 lists 13 among its ancestors"
    assert lines[("taxa.csv", taxa_line[50])].startswith(
        "ancestry='48460/47126/20/2x1' is not a valid ancestry"
    )
    assert lines[("taxa.csv", taxa_line[51])] == "ancestry lists the taxon itself (51)"
    assert lines[("taxa.csv", taxa_line[52])] == "not valid UTF-8"
    assert lines[("taxa.csv", taxa_line[54])].startswith("name='QQQ")


LOOSE_CASTS = [  # (table, column, value): DuckDB would cast each (2.5 -> 3, +2048, 1e3, nan, ...)
    ("photos", "photo_id", "2.5"),
    ("photos", "photo_id", "+2048"),
    ("photos", "photo_id", "1e3"),
    ("photos", "width", "٣٠٠"),
    ("observations", "observed_on", "2020-5-1"),
    ("observations", "observed_on", "2020-05-01 (BC)"),
    ("observations", "anomaly_score", "nan"),
    ("observations", "latitude", "inf"),
    ("observations", "observation_uuid", "ABCDEF00-0000-4000-8000-000000000030"),
    ("observations", "observation_uuid", "{" + uuid(31) + "}"),
    ("taxa", "active", "yes"),
    ("observations", "observed_on", "0000-01-01"),
    ("photos", "extension", "GİF"),  # DuckDB: 1 BC; lower() gif
    ("taxa", "taxon_id", "abc"),  # cast to NULL: its key must not hide the unknown ancestor below
]


def test_loose_casts_are_refused_not_rounded(tmp_path):
    """Each value DuckDB's casts would accept and change is a rejected row, with the message the
    format checker gives for the same value (one definition), and no genuine row is lost to it."""
    observations = [obs(n, 13) for n in range(1, 4)]
    photos = [photo(n, 1) for n in range(1, 4)]
    taxa = list(TAXA)
    expected = {}
    for table, column, value in LOOSE_CASTS:
        rows = {"observations": observations, "photos": photos, "taxa": taxa}[table]
        base = {
            "observations": obs(40 + len(rows), 13),
            "photos": photo(50 + len(rows), 2),
            "taxa": (900 + len(rows), "48460/1", 60, "phylum", "Extra", "true"),
        }[table]
        row = list(base)
        row[COLUMNS[table].index(column)] = value
        rows.append(tuple(row))
        expected[(f"{table}.csv", len(rows) + 1)] = value_problem(
            column, value, Plausible(1800, date(2024, 9, 27))
        )
    taxa.append((990, "48460/77777", 60, "phylum", "Orphan", "true"))
    expected[("taxa.csv", len(taxa) + 1)] = "ancestry lists 77777, which taxa does not hold"
    snapshot = write_snapshot(tmp_path / "snap", observations, photos, taxa=taxa, gz=False)
    report = curate(
        snapshot,
        tmp_path / "out",
        LOOSE,
        taxonomy=write_dwca(tmp_path / "dwca", []),
        snapshot="2024-09-27",
    )
    rejects = [
        line.split("\t") for line in (tmp_path / "out" / "rejects.csv").read_text().splitlines()[1:]
    ]
    assert {(file, int(line)): reason for file, line, reason in rejects} == expected
    assert all(expected.values())  # the checker refuses each value too
    assert sorted(r["photo_id"] for r in parquet_rows(tmp_path / "out" / "curated.parquet")) == [
        1,
        2,
        3,
    ]
    assert "duplicate_photo" not in report["dropped"] and balanced(report)


def test_a_loop_of_parents_of_any_length_is_refused(tmp_path):
    """family -> species -> genus -> family: no taxon lists one that lists it back, but following
    parents never reaches the root; without the check the family's photo got a species."""
    taxa = [t for t in TAXA if t[0] not in (11, 12, 13, 14, 15)] + [
        (11, "48460/1/2/3/10/13", 30, "family", "Parulidae", "true"),
        (13, "48460/1/2/3/10/12", 10, "species", "Setophaga petechia", "true"),
        (12, "48460/1/2/3/10/11", 20, "genus", "Setophaga", "true"),
        (14, "48460/1/2/3/10/11/12/13", 5, "subspecies", "Setophaga petechia aestiva", "true"),
    ]
    snapshot = write_snapshot(
        tmp_path / "snap",
        [obs(1, 11), obs(2, 14), obs(3, 27)],
        [photo(1, 1), photo(2, 2), photo(3, 3)],
        taxa=taxa,
        gz=False,
    )
    report = curate(
        snapshot,
        tmp_path / "out",
        LOOSE,
        taxonomy=write_dwca(tmp_path / "dwca", []),
        snapshot="2024-09-27",
    )
    assert [r["photo_id"] for r in parquet_rows(tmp_path / "out" / "curated.parquet")] == [3]
    assert report["dropped"] == {"ancestor_rejected": 1, "taxon_rejected": 1}
    rejects = [
        line.split("\t") for line in (tmp_path / "out" / "rejects.csv").read_text().splitlines()[1:]
    ]
    line_of = {t[0]: n + 2 for n, t in enumerate(taxa)}
    assert {(int(line), reason) for _, line, reason in rejects} == {
        (
            line_of[taxon],
            f"ancestry cycle: following parents from {taxon} comes back to it after 3 steps",
        )
        for taxon in (11, 12, 13)
    }


def test_floors_empty_table_and_drop_limits(tmp_path):
    snapshot = write_snapshot(tmp_path / "snap", [obs(9, 13)], [photo(1, 1), photo(2, 2)])
    dwca = write_dwca(tmp_path / "dwca", [])
    with pytest.raises(
        CurateError,
        match=r"no photo survived curation \(2 photo rows in; dropped most: "
        r"observation_missing 2.*curate.allow_empty.*rejected lines: .*out\.rejects\.csv",
    ):
        curate(snapshot, tmp_path / "out", LOOSE, taxonomy=dwca, snapshot="2024-09-27")
    assert not (tmp_path / "out").exists()
    kept_rejects = tmp_path / "out.rejects.csv"  # the message's "rejected lines": the failed run's
    assert kept_rejects.read_text() == "file\tline\treason\n"
    snapshot = write_snapshot(
        tmp_path / "snap2",
        [obs(n, 13) for n in range(1, 20)] + [obs(20, 15)],
        [photo(n, n) for n in range(1, 21)],
    )
    with pytest.raises(
        CurateError,
        match=r"5\.0% of the photo rows dropped as taxon_inactive \(1 of 20\), above "
        r"curate.drop_limits.other = 0.04.*raise curate.drop_limits.taxon_inactive",
    ):
        curate(
            snapshot,
            tmp_path / "out",
            {"drop_limits": {"other": 0.04}},
            taxonomy=dwca,
            snapshot="2024-09-27",
        )
    report = curate(
        snapshot,
        tmp_path / "out",
        {"drop_limits": {"other": 0.04, "taxon_inactive": 0.05}},
        taxonomy=dwca,
        snapshot="2024-09-27",
    )
    assert not kept_rejects.exists()  # a later run that passes removes the failed run's
    assert (report["photos_out"], report["dropped"]) == (19, {"taxon_inactive": 1})


# -- the sample ---------------------------------------------------------------------------------
def test_sample_is_deterministic_across_runs_threads_and_input_form(mirror, tmp_path):
    with tarfile.open(mirror / "metadata" / "inaturalist-open-data-20240927.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    bundle = tmp_path / "inaturalist-open-data-20240927"  # an unpacked monthly bundle, plain .csv
    outputs = {}
    # the mirror's root tables are the same month as .csv.gz (streamed to DuckDB through a pipe)
    for run, (folder, threads) in enumerate(((bundle, 1), (bundle, 2), (bundle, 2), (mirror, 2))):
        out = tmp_path / f"out{run}"
        report = curate(
            folder, out, {"threads": threads}, mirror / TAXONOMY_ARCHIVE, snapshot="2024-09-27"
        )
        assert balanced(report)
        outputs[run] = {
            f: hashlib.sha256((out / f).read_bytes()).hexdigest()
            for f in ("curated.parquet", "curation_report.json", "rejects.csv")
        }
    assert outputs[0] == outputs[1] == outputs[2]
    assert outputs[3]["curated.parquet"] == outputs[0]["curated.parquet"]
    assert outputs[3]["curation_report.json"] == outputs[0]["curation_report.json"]
    stored = parquet_rows(tmp_path / "out0" / "curated.parquet", "SELECT photo_id FROM t")
    stored_order = [r["photo_id"] for r in stored]
    assert stored_order == sorted(set(stored_order)) and len(stored_order) > 10_000


def test_a_memory_limit_below_the_data_spills_to_disk_and_gives_the_same_bytes(mirror, tmp_path):
    snapshot = tiled_snapshot(bundle_tables(mirror, "2024-09-27"), 400_000, tmp_path / "big")
    spilled: list[int] = []
    watching = threading.Event()

    def watch(folder: Path) -> None:  # DuckDB's spill files live only while the run needs them
        while not watching.is_set():
            spilled.append(sum(f.stat().st_size for f in folder.glob("*/spill/*") if f.is_file()))
            time.sleep(0.005)

    digests = []
    for limit in ("4GB", "250MB"):
        watcher = threading.Thread(target=watch, args=(tmp_path / limit,))
        watcher.start()
        try:
            curate(
                snapshot,
                tmp_path / f"out-{limit}",
                {"memory_limit": limit, "temp_directory": str(tmp_path / limit), "threads": 2},
                mirror / TAXONOMY_ARCHIVE,
                snapshot="2024-09-27",
            )
        finally:
            watching.set()
            watcher.join()
        watching.clear()
        digests.append(
            hashlib.sha256((tmp_path / f"out-{limit}" / "curated.parquet").read_bytes()).hexdigest()
        )
        if limit == "4GB":
            assert max(spilled) == 0
            spilled.clear()
    assert max(spilled) > 50_000_000 and digests[0] == digests[1]


def test_no_observer_login_or_name_in_any_output(mirror, tmp_path):
    pii = set()
    sources = [
        (REAL / "inat-open-data-2022-06", "2022-06-27"),
        (REAL / "inat-open-data-pyinat", "2021-06-01"),
    ]
    with tarfile.open(mirror / "metadata" / "inaturalist-open-data-20240827.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    sources.append((tmp_path / "inaturalist-open-data-20240827", "2024-08-27"))
    for i, (folder, day) in enumerate(sources):
        observers = folder / (
            "observers.csv.gz" if (folder / "observers.csv.gz").exists() else "observers.csv"
        )
        text = (
            gzip.decompress(observers.read_bytes()).decode()
            if observers.suffix == ".gz"
            else observers.read_text()
        )
        for line in text.splitlines()[1:]:
            _, login, name = line.split("\t")
            pii |= {v for v in (login, name) if len(v) > 3 and v != "None"}
        out = tmp_path / f"out{i}"
        curate(
            folder,
            out,
            {**LOOSE, "allow_empty": True},
            taxonomy=mirror / TAXONOMY_ARCHIVE,
            snapshot=day,
        )
        curated = duckdb.sql(f"SELECT * FROM '{out / 'curated.parquet'}'")
        assert not any("observer" in c or "user" in c for c in curated.columns)
        values = {str(v) for row in curated.fetchall() for v in row if isinstance(v, str)}
        texts = (out / "curation_report.json").read_text() + (out / "rejects.csv").read_text()
        leaked = {p for p in pii if p in values or p in texts}
        assert not leaked, leaked
    assert len(pii) > 50


def test_too_little_memory_is_a_clear_error(mirror, tmp_path):
    # .csv.gz inputs: DuckDB fails while the gzip streams wait on their pipes, which must not hang
    with pytest.raises(CurateError, match="curate.memory_limit=1MB"):
        curate(
            mirror, tmp_path / "out", {"memory_limit": "1MB", "threads": 1}, snapshot="2024-09-27"
        )
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def test_a_killed_run_leaves_its_spill_folder_only_in_its_staging_folder(mirror, tmp_path):
    """DuckDB's spill folder lives in the output's staging folder (out.tmp), never in the system
    temp folder, so the next run, which starts by removing out.tmp, removes a killed run's spill."""
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    command = [
        sys.executable,
        "-m",
        "workflow_scripts.curate",
        "--raw",
        str(mirror),
        "--out",
        str(tmp_path / "out"),
        "--date",
        "2024-09-27",
    ]
    run = subprocess.Popen(
        command,
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(system_temp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while run.poll() is None and not list((tmp_path / "out.tmp").glob("curate-*")):
        time.sleep(0.01)
    run.kill()
    run.wait()
    assert list((tmp_path / "out.tmp").glob("curate-*")) and not list(system_temp.iterdir())
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0 and not (tmp_path / "out.tmp").exists()
    assert (
        "31,365 photo rows in, 16,057 curated; rejected rows (rejects.csv): observations 0, photos "
        "0, taxa 0; dropped most: quality_grade 8,893, license 5,896, kingdom 450"
    ) in rerun.stderr  # the summary
