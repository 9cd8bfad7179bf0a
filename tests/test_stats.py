"""Dataset statistics: known numbers on a tiny input, every artifact written, same bytes on
rerun."""

from __future__ import annotations

import hashlib

import duckdb
import numpy as np
import pandas as pd
import pytest

from workflow_scripts.common.tables import markdown
from workflow_scripts.stats import lorenz, stats


def test_lorenz_on_known_counts():
    x, y, gini, top20 = lorenz(np.array([96, 1, 1, 1, 1]))
    assert top20 == pytest.approx(0.96)  # one species of five holds 96 of 100 images
    assert list(y) == pytest.approx([0, 0.01, 0.02, 0.03, 0.04, 1.0])
    assert gini == pytest.approx(1 - 0.2 * (0.01 + 0.03 + 0.05 + 0.07 + 1.04))
    assert lorenz(np.array([5, 5, 5, 5]))[2] == pytest.approx(0)  # equal shares: no inequality


def test_markdown_table():
    frame = pd.DataFrame({"name": ["a|b", None], "n": [1, 2]})
    assert (
        markdown(frame, "Caption.")
        == "Caption.\n\n| name | n |\n|---|---:|\n| a\\|b | 1 |\n|  | 2 |\n"
    )


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    path = tmp_path_factory.mktemp("curated") / "curated.parquet"
    rows = (
        [("Animalia", "Chordata", "Aves", "O1", "F1", "G1", "G1 a")] * 6
        + [("Animalia", "Arthropoda", "Insecta", "O2", "F2", "G2", "G2 b")] * 3
        + [("Plantae", "Tracheophyta", "Magnoliopsida", "O3", "F3", "G3", "G3 c")] * 1
        + [("Plantae", "Tracheophyta", "Magnoliopsida", "O3", "F3", "G3", None)] * 2
    )
    frame = pd.DataFrame(
        rows, columns=["kingdom", "phylum", "class", "order", "family", "genus", "species"]
    )
    frame["snapshot"] = pd.Timestamp("2024-09-27")
    duckdb.sql(f"COPY (SELECT * FROM frame) TO '{path}' (FORMAT parquet)")
    return path


def test_counts_and_files(curated, tmp_path):
    summary = stats(curated, tmp_path / "stats", top_n=2)
    assert (summary["images"], summary["species"]) == (12, 3)
    out = tmp_path / "stats"
    assert pd.read_csv(out / "images_species_by_kingdom.csv").to_dict("list") == {
        "kingdom": ["Animalia", "Plantae"],
        "images": [9, 3],
        "species": [2, 1],
    }
    assert pd.read_csv(out / "top_species.csv").species.tolist() == ["G1 a", "G2 b"]
    long_tail = dict(pd.read_csv(out / "long_tail.csv").values)
    assert float(long_tail["top_20pct_species_image_share"]) == pytest.approx(
        0.6
    )  # 6 of 10 species-level images
    assert "12 images" in (out / "table2_biotrove_column.md").read_text()
    for png in ("figure2_distribution.png", "figure3_treemap.png", "long_tail_lorenz.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_gives_the_same_bytes(curated, tmp_path):
    digests = []
    for run in range(2):
        stats(curated, tmp_path / f"s{run}", top_n=2)
        digests.append(
            {
                p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((tmp_path / f"s{run}").iterdir())
            }
        )
    assert digests[0] == digests[1] and len(digests[0]) == 15
