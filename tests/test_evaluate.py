"""Zero-shot evaluation core: metrics on a hand case; every benchmark evaluated, same bytes on rerun."""

from __future__ import annotations

import hashlib
import json

import duckdb
import numpy as np
import pytest

from tests.test_subsets import rows_of, write_curated
from workflow_scripts import evaluate
from workflow_scripts.download import download
from workflow_scripts.shards import build


def test_benchmark_metrics_by_hand():
    ranked = np.array([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 1, 0, 3, 4], [1, 2, 0, 3, 4]])
    metrics = evaluate.benchmark_metrics(ranked, np.array([0, 0, 0, 1]), 5)
    assert (metrics["top1"], metrics["top5"], metrics["macro_top1"]) == (0.5, 1.0, pytest.approx((1 / 3 + 1) / 2,
                                                                                                   abs=1e-6))
    assert metrics["top1_ci95"] == [0.150039, 0.849961] and (metrics["images"], metrics["classes"]) == (4, 5)


def test_every_benchmark_evaluated_and_rerun_gives_the_same_bytes(photo_server, tmp_path):
    served, _, _ = photo_server
    rows = {"train": [{**r, "split": "test" if r["photo_id"] % 2 else "train"}
                      for r in rows_of("Aus alba", 2, "Aves", 1) + rows_of("Bus beta", 2, "Insecta", 3)],
            "balanced": rows_of("Aus alba", 1, "Aves", 5) + rows_of("Bus beta", 1, "Insecta", 6),
            "unseen": rows_of("Cus gamma", 1, "Insecta", 7),
            "lifestages": [{**r, "label": "common Dus delta larva"} for r in rows_of("Dus delta", 1, "Insecta", 8)]}
    for subset, subset_rows in rows.items():
        table = write_curated(subset_rows, tmp_path / f"{subset}.parquet")
        download(table, tmp_path / "images" / subset, {"url_rewrite": {"from": "https://example.org", "to": served}})
        build(table, tmp_path / "images" / subset, tmp_path / "shards" / subset)
    first = evaluate.evaluate(tmp_path / "shards", "biotrove-tiny", None, tmp_path / "a")
    evaluate.evaluate(tmp_path / "shards", "biotrove-tiny", None, tmp_path / "b")
    assert {name: first[name]["images"] for name in evaluate.BENCHMARKS} == {
        "train": 2, "balanced": 2, "unseen": 1, "lifestages": 1}
    assert first["train"]["classes"] == 2  # every Train species, not only those of the test split
    predictions = duckdb.sql(f"SELECT photo_id, len(top_ids) FROM '{tmp_path}/a/train.predictions.parquet'").fetchall()
    assert predictions == [(1, 2), (3, 2)]
    assert json.loads((tmp_path / "a" / "metrics.json").read_text()) == first
    digests = [{p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((tmp_path / run).iterdir())}
               for run in ("a", "b")]
    assert digests[0] == digests[1]
