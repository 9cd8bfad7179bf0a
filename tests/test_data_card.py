"""The data card: known numbers from a tiny snapshot in the Markdown, every figure written, the
counts following the data, the same bytes on rerun."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date

import duckdb
import pandas as pd
import pytest

from workflow_scripts.common import contracts
from workflow_scripts.data_card import data_card, license_terms, main

# (images, taxon_id, rank, class, kingdom, species, license, observed_on, latitude, longitude)
PHOTOS = [
    (5, 1, "species", "Aves", "Animalia", "Ga a", "CC-BY-NC", date(2024, 6, 1), 40.0, -100.0),
    (1, 1, "species", "Aves", "Animalia", "Ga a", "CC0", date(2024, 6, 1), 40.0, -100.0),
    (3, 2, "species", "Insecta", "Animalia", "Gb b", "CC-BY", date(2015, 5, 5), -10.0, 20.0),
    (1, 3, "species", "Magnoliopsida", "Plantae", "Gc c", "CC-BY", date(2010, 1, 1), 50.0, 10.0),
    (2, 4, "genus", "Magnoliopsida", "Plantae", None, "CC0", None, None, None),
]
CURATION = {
    "photos_in": 20,
    "photos_out": 12,
    "dropped": {"quality_grade": 5, "license": 2, "mystery": 1},
    "rejected_rows": {"observations": 0, "photos": 1, "taxa": 0},
    "rows_read": {"observations": 15, "photos": 21, "taxa": 9},
}
SUBSETS = {
    "settings": {
        "categories": {
            "Aves": "class",
            "Fungi": "kingdom",
            "Insecta": "class",
            "Plantae": "kingdom",
        }
    },
    "subsets": {"train": {"images": 9, "species": 2}, "lifestages": {"images": 2, "labels": 1}},
}


def curated_table(path, photos=PHOTOS):
    rows = []
    for images, taxon, rank, klass, kingdom, species, license, observed, lat, lon in photos:
        for _ in range(images):
            rows.append(
                {
                    "photo_id": 100 + len(rows),
                    "observation_uuid": f"obs-{taxon}-{observed}-{len(rows) // 2}",
                    "taxon_id": taxon,
                    "taxon_rank": rank,
                    "kingdom": kingdom,
                    "phylum": "P",
                    "class": klass,
                    "order": "O",
                    "family": "F",
                    "genus": (species or "Gd").split()[0],
                    "species": species,
                    "license": license,
                    "observed_on": observed,
                    "latitude": lat,
                    "longitude": lon,
                    "snapshot": date(2024, 9, 27),
                }
            )
    con = duckdb.connect()
    con.register("frame", pd.DataFrame(rows))
    typed = (
        "observed_on::DATE AS observed_on, latitude::DOUBLE AS latitude, longitude::DOUBLE AS "
        "longitude, species::VARCHAR AS species"
    )
    con.execute(
        f"COPY (SELECT * REPLACE ({typed}) FROM frame ORDER BY photo_id) TO '{path}' "
        f"(FORMAT parquet)"
    )
    return path


@pytest.fixture()
def inputs(tmp_path):
    (tmp_path / "curation.json").write_text(json.dumps(CURATION))
    (tmp_path / "subsets.json").write_text(json.dumps(SUBSETS))
    return (
        curated_table(tmp_path / "curated.parquet"),
        tmp_path / "curation.json",
        tmp_path / "subsets.json",
    )


def section(text: str, title: str) -> str:
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def table(text: str, title: str) -> dict[str, list[str]]:
    """The first Markdown table of a section, as {first cell: the other cells}."""
    first = section(text, title).split("\n|", 1)[1].split("\n\n", 1)[0]
    rows = [line[2:-2].split(" | ") for line in first.splitlines()[2:]]
    return {row[0]: [cell.strip() for cell in row[1:]] for row in rows}


def card(inputs, out, **kwargs) -> str:
    data_card(*inputs, out, **kwargs)
    return (out / contracts.DATA_CARD).read_text()


def test_license_terms():
    assert license_terms("CC-BY-NC-SA") == {
        "attribution required": "yes",
        "commercial use": "no",
        "adaptations": "share alike",
    }
    assert license_terms("CC-BY-ND")["adaptations"] == "no"
    assert license_terms("CC0") == {
        "attribution required": "no",
        "commercial use": "yes",
        "adaptations": "yes",
    }


def test_known_numbers(inputs, tmp_path):
    text = card(inputs, tmp_path / "card")
    assert text.startswith(
        "# Data card: BioTrove from iNaturalist Open Data, snapshot 2024-09-27\n"
    )
    assert "12 images of 3 species (4 taxa" in text
    assert table(text, "Licenses") == {
        "CC-BY-NC": ["5", "41.7", "yes", "no", "yes"],
        "CC-BY": ["4", "33.3", "yes", "yes", "yes"],
        "CC0": ["3", "25.0", "no", "yes", "yes"],
    }
    composition = section(text, "Composition")
    assert (
        "| species | 10 | 83.3 | 3 |" in composition and "| genus | 2 | 16.7 | 1 |" in composition
    )
    assert (
        "| Aves | class | 6 | 50.0 | 1 |" in composition
        and "| Fungi | kingdom | 0 | 0.0 | 0 |" in composition
    )
    assert (
        "| Plantae | kingdom | 3 | 25.0 | 1 |" in composition
        and "| other |  | 0 | 0.0 | 0 |" in composition
    )
    # species counts 6, 3, 1: the top 20% (one species) hold 6 of the 10 species-level images
    assert "the top 20% of species hold 60.0%" in section(text, "Long tail")
    assert (
        "median 3 and at most 6 images per species (Ga a); 1 species (33.3%) have a single" in text
    )
    geography = section(text, "Geography")
    assert "10 of 12 images (83.3%) have coordinates" in geography
    assert "70.0% lie in the northern hemisphere" in geography
    assert (
        "60.0% inside a rough North America box" in geography
        and "10.0% inside a rough Europe box" in geography
    )
    assert "60.0% of the dated images are from the last 5 years of the data (2020–2024)" in text
    assert "2 images have no observation date" in text
    assert table(text, "Filters and rows dropped") == {
        "quality_grade": ["5", "25.00", "not research grade"],
        "license": ["2", "10.00", "a license curation does not keep (config curate)"],
        "mystery": ["1", "5.00", ""],
    }
    assert "read 20 photo rows and kept 12 (60.0%)" in text
    assert (
        "| photos | 21 | 1 |" in text
        and "| train | 9 | 2 |" in text
        and "| lifestages | 2 |  |" in text
    )
    biases = section(text, "Known biases")
    assert (
        "The largest category, Aves, holds 50.0%" in biases
        and "70.0% of the images with coordinates" in biases
    )
    assert "9 images (75.0%: CC-BY-NC and CC-BY) require attribution" in text
    assert (
        "`https://www.inaturalist.org/photos/<photo_id>`" in text
        and "`data/snapshots/2024-09-27/raw/`" in text
    )
    assert "@inproceedings{yang2024biotrove," in text
    for figure in contracts.DATA_CARD_FIGURES:
        assert f"]({figure})" in text
        assert (tmp_path / "card" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_planted_change_shows_in_the_counts(inputs, tmp_path):
    """One CC0 photo becomes CC-BY-SA: the license table follows the data, not the text."""
    planted = [
        *PHOTOS[:1],
        (1, 1, "species", "Aves", "Animalia", "Ga a", "CC-BY-SA", date(2024, 6, 1), 40.0, -100.0),
        *PHOTOS[2:],
    ]
    curated_table(inputs[0], planted)
    expected = {
        "CC-BY-NC": ["5", "41.7", "yes", "no", "yes"],
        "CC-BY": ["4", "33.3", "yes", "yes", "yes"],
        "CC0": ["2", "16.7", "no", "yes", "yes"],
        "CC-BY-SA": ["1", "8.3", "yes", "yes", "share alike"],
    }
    text = card(inputs, tmp_path / "card")
    assert table(text, "Licenses") == expected
    assert "10 images (83.3%: CC-BY-NC, CC-BY and CC-BY-SA) require attribution" in text
    # the check reads each count: one wrong number in the table fails it
    assert table(text.replace("| CC0 | 2 | 16.7 |", "| CC0 | 3 | 16.7 |"), "Licenses") != expected


def test_rerun_gives_the_same_bytes(inputs, tmp_path):
    digests = []
    for run in range(2):
        data_card(*inputs, tmp_path / f"c{run}", date="2024-09-27")
        digests.append(
            {
                p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in (tmp_path / f"c{run}").iterdir()
            }
        )
    assert digests[0] == digests[1]
    assert sorted(digests[0]) == sorted([contracts.DATA_CARD, *contracts.DATA_CARD_FIGURES])


def test_main_and_an_empty_table(inputs, tmp_path):
    args = [
        "--curated",
        str(inputs[0]),
        "--curation-report",
        str(inputs[1]),
        "--subsets-report",
        str(inputs[2]),
    ]
    assert main([*args, "--out", str(tmp_path / "card"), "--date", "2024-10-01"]) == 0
    assert re.search(
        r"snapshot 2024-10-01\n", (tmp_path / "card" / contracts.DATA_CARD).read_text()
    )
    curated_table(inputs[0], [(1, 9, "genus", "Aves", "Animalia", None, "CC0", None, 1.0, 1.0)])
    with pytest.raises(SystemExit) as exited:
        main([*args, "--out", str(tmp_path / "empty")])
    assert exited.value.code == 1 and not (tmp_path / "empty").exists()
