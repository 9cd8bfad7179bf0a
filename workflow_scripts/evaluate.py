"""Zero-shot evaluation of one model on a snapshot's benchmarks (issue 7, in progress: the core).

    python -m workflow_scripts.evaluate --shards data/snapshots/<date>/shards --model biotrove-tiny \\
        --pretrained models/<date>/tiny-cpu/checkpoint.pt --out results/<date>/eval/tiny-cpu

Benchmarks from the subsets' shards: Train's test split (classes: every Train species), Balanced,
Unseen (classes: their species, by scientific name) and LifeStages (classes: its labels,
"{common name} {stage}"). Per benchmark: `<benchmark>.predictions.parquet` (photo_id, label and the
top-5 class ids and probabilities: tables rebuild from it without the model) and, in
`metrics.json`, top-1 and top-5 with 95% Wilson intervals, macro accuracy, images and classes,
and the paper's class-weighted average over the benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.files import building, write_json
from workflow_scripts.metrics import macro_accuracy, top_k_hits, weighted_average, wilson

# benchmark -> (shards folder, split to read or None, the row's column naming its class)
BENCHMARKS = {"train": ("train", "test", "species"), "balanced": ("balanced", None, "species"),
              "unseen": ("unseen", None, "species"), "lifestages": ("lifestages", None, "label")}
TOP_K = 5


def benchmark_metrics(ranked: np.ndarray, labels: np.ndarray, classes: int) -> dict:
    """Top-1/top-5 with Wilson intervals, macro accuracy, images, classes (probabilities rounded
    to 6 decimals, so reruns write the same bytes)."""
    metrics = {"images": int(len(labels)), "classes": classes}
    for k in (1, TOP_K):
        hits = top_k_hits(ranked, labels, k)
        low, high = wilson(int(hits.sum()), len(hits))
        metrics[f"top{k}"] = round(float(hits.mean()), 6) if len(hits) else 0.0
        metrics[f"top{k}_ci95"] = [round(low, 6), round(high, 6)]
        if k == 1:
            metrics["macro_top1"] = round(macro_accuracy(hits, labels), 6)
    return metrics


def evaluate(shards: Path, model: str, pretrained: str | None, out: Path) -> dict:
    from workflow_scripts.zeroshot import classifier, load_model, shard_samples, top_k

    network, preprocess, tokenizer = load_model(model, pretrained)
    results = {}
    with building(out) as staging:
        for name, (folder, split, column) in BENCHMARKS.items():
            samples, every_row = shard_samples(shards / folder, split)  # Train: classes from all its rows
            rows = [row for _, row in samples]
            class_names = sorted({row[column] for row in every_row})
            class_ids = {name: number for number, name in enumerate(class_names)}
            labels = np.array([class_ids[row[column]] for row in rows], dtype=np.int64)
            weights = classifier(network, tokenizer, class_names)
            ranked, scores = top_k(network, preprocess, [image for image, _ in samples], weights, TOP_K)
            order = np.argsort([row["photo_id"] for row in rows], kind="stable")
            pq.write_table(pa.table({
                "photo_id": [rows[i]["photo_id"] for i in order], "label": labels[order],
                "top_ids": ranked[order].tolist(), "top_scores": np.round(scores[order], 6).tolist()}),
                staging / f"{name}.predictions.parquet")
            results[name] = benchmark_metrics(ranked, labels, len(class_names))
        results["weighted_average_top1"] = round(weighted_average(
            {n: results[n]["top1"] for n in BENCHMARKS}, {n: results[n]["classes"] for n in BENCHMARKS}), 6)
        write_json(staging / "metrics.json", results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, required=True, help="a snapshot's shards folder (one per subset)")
    parser.add_argument("--model", required=True, help="open_clip model name (or one of our model configs)")
    parser.add_argument("--pretrained", help="open_clip pretrained tag or a checkpoint file")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    results = evaluate(args.shards, args.model, args.pretrained, args.out)
    print(json.dumps({name: results[name]["top1"] for name in BENCHMARKS}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
