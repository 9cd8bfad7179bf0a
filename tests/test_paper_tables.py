"""Tables 5, 8, 9 and the conformal table from cached metrics: hand-computed cells, the rounding
rule, no provenance in the tables' bytes, and the same bytes on a rebuild."""

from __future__ import annotations

import hashlib
import json
from fractions import Fraction

from workflow_scripts.common.tables import half_up
from workflow_scripts.evaluate.metrics import wilson
from workflow_scripts.evaluate.paper_tables import paper_tables


def scored(hits: int, images: int, classes: int, top5_hits: int) -> dict:
    return {
        "images": images,
        "classes": classes,
        "top1_hits": hits,
        "top1": round(hits / images, 6),
        "top1_ci95": [round(v, 6) for v in wilson(hits, images)],
        "top5_hits": top5_hits,
        "top5": round(top5_hits / images, 6),
        "top5_ci95": [0.0, 1.0],
        "macro_top1": 0.0,
        "name_mode": "scientific",
    }


def metrics(balanced_hits: int) -> dict:
    benchmarks = {"balanced": scored(balanced_hits, 16, 30, 16), "unseen": scored(1, 4, 10, 2)}
    return {
        "benchmarks": benchmarks,
        "weighted_average_top1": 0.0,
        "levels": [
            {**scored(3, 16, 30, 9), "level": "species", "name_mode": mode}
            for mode in ("scientific", "common", "taxonomic", "scientific_common")
        ],
        "conformal": [
            {
                "benchmark": "balanced",
                "method": "softmax",
                "alpha": alpha,
                "calibration_images": 8,
                "test_images": 8,
                "coverage": 0.875,
                "macro_coverage": 0.8125,
                "mean_set_size": 2.125,
            }
            for alpha in (0.1, 0.2)
        ],
    }


def test_half_up_rounding():
    assert [
        half_up(Fraction(1, 16) * 100, 1),
        half_up(0.125, 2),
        half_up(Fraction(-1, 8), 2),
        half_up(2.5, 0),
    ] == ["6.3", "0.13", "-0.12", "3"]


def test_tables_from_cached_metrics(tmp_path):
    for model, hits in (("ours", 1), ("control", 0)):
        (tmp_path / "eval" / model).mkdir(parents=True)
        (tmp_path / "eval" / model / "metrics.json").write_text(json.dumps(metrics(hits)))
    settings = {
        "benchmarks": ["balanced", "unseen"],
        "levels_benchmark": "balanced",
        "conformal": {"alpha": 0.1},
    }
    metrics_files = [tmp_path / "eval" / model / "metrics.json" for model in ("ours", "control")]

    def build(out: str) -> dict[str, str]:
        paper_tables(metrics_files, ["ours", "control"], tmp_path / out, settings)
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((tmp_path / out).iterdir())
        }

    assert build("a") == build("b")
    table5 = (tmp_path / "a" / "table5_zero_shot.csv").read_text().splitlines()
    low, high = wilson(1, 16)
    assert table5[0] == "Model,BTB (n=30),BTU (n=10),Weighted Avg."
    # 1/16 = 6.25% -> 6.3; weighted: (1/16 * 30 + 1/4 * 10) / 40 = 10.9375% -> 10.9
    assert (
        table5[1] == f"ours,6.3 ± {half_up(50 * (high - low), 2)},25.0 ± "
        f"{half_up(50 * (wilson(1, 4)[1] - wilson(1, 4)[0]), 2)},10.9"
    )
    assert (
        len(table5) == 3
    )  # header and two models: what made the table is in its provenance, not in it
    table9 = (tmp_path / "a" / "table9_top1_top5.csv").read_text().splitlines()
    assert table9[:3] == [
        "Benchmark,ours Top-1,ours Top-5,control Top-1,control Top-5",
        "BioTrove-Balanced,0.0625,1.0000,0.0000,1.0000",
        "BioTrove-Unseen,0.2500,0.5000,0.2500,0.5000",
    ]
    table8 = (tmp_path / "a" / "table8_levels.csv").read_text().splitlines()
    assert table8[:2] == [
        "Model,Level,classes,Scientific,Common,Taxonomic,Scientific + common",
        "ours,species,30,18.8,18.8,18.8,18.8",
    ]  # 3/16 = 18.75%
    conformal = (tmp_path / "a" / "conformal_sets.csv").read_text().splitlines()
    assert conformal[1] == "ours,BTB,softmax (marginal),87.5,81.3,2.13,8/8"  # alpha 0.1 only
    assert len(conformal) == 3
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["ours"]["balanced"] == {
        "top1": 0.0625,
        "top5": 1.0,
    }
    assert "\\begin{tabular}{llll}" in (tmp_path / "a" / "table5_zero_shot.tex").read_text()
