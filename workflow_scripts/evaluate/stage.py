"""Zero-shot evaluation of one model on a snapshot's benchmarks (Tables 5, 8, 9 read its output).

Benchmarks: Train's test split (its own shard set; classes: every Train species, from the subset's
table), Balanced, Unseen (classes: their species, by scientific name), LifeStages (classes: its
labels, "{common name} {stage}") and the configured external benchmarks. Each benchmark's images
are decoded by `evaluate.workers` DataLoader workers and encoded once, their features streamed
through a file (memory does not grow with the benchmark); then, in `--out`:
- `<benchmark>.predictions.parquet`: photo_id, label, top-5 class ids and probabilities;
- `<levels benchmark>.levels.parquet`: the same per taxonomic level and name mode (Table 8);
- `metrics.json`: per benchmark top-1 and top-5 (hits, images, 95% Wilson intervals), macro
  accuracy and classes; the class-weighted average over benchmarks; the levels; and conformal
  sets (coverage, macro-coverage, mean set size) per method and alpha, calibrated on a
  hash-chosen part of each benchmark and measured on the rest.
The settings are config.yaml's `evaluate` section.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.common import contracts
from workflow_scripts.common.benchmarks import (
    NAME_MODES,
    Benchmark,
    benchmark_inputs,
    class_name,
    open_benchmark,
)
from workflow_scripts.common.config import settings as evaluate_settings
from workflow_scripts.common.files import building, write_json
from workflow_scripts.common.taxonomy import RANKS
from workflow_scripts.evaluate.errors import EvaluateError
from workflow_scripts.evaluate.metrics import (
    calibrate,
    macro_accuracy,
    prediction_sets,
    set_report,
    top_k_hits,
    weighted_average,
    wilson,
)

TOP_K = 5
METHODS = ("softmax", "class_conditional", "pas", "wpas")


def benchmark_metrics(ranked: np.ndarray, labels: np.ndarray, classes: int) -> dict:
    """Top-1/top-5 hits and accuracy with Wilson intervals, macro accuracy, images, classes
    (fractions rounded to 6 decimals, so reruns write the same bytes)."""
    metrics = {"images": int(len(labels)), "classes": classes}
    for k in (1, TOP_K):
        hits = top_k_hits(ranked, labels, k)
        low, high = wilson(int(hits.sum()), len(hits))
        metrics[f"top{k}_hits"] = int(hits.sum())
        metrics[f"top{k}"] = round(float(hits.mean()), 6) if len(hits) else 0.0
        metrics[f"top{k}_ci95"] = [round(low, 6), round(high, 6)]
        if k == 1:
            metrics["macro_top1"] = round(macro_accuracy(hits, labels), 6)
    return metrics


def in_calibration(photo_ids: list, salt: str, fraction: float) -> np.ndarray:
    """Which images calibrate the conformal sets: a salted hash of the id, so the same images in
    every run and for every model."""

    def share(photo_id) -> float:
        return (
            int.from_bytes(hashlib.sha256(f"{salt}:{photo_id}".encode()).digest()[:8], "big")
            / 2**64
        )

    return np.array([share(photo_id) < fraction for photo_id in photo_ids], dtype=bool)


def class_weights(classes: list[dict], weights: dict[str, float]) -> np.ndarray:
    """Per class, the configured weight of the most specific name in its lineage (or its label)
    that has one, else 1; normalised to sum 1."""

    def weight(row: dict) -> float:
        names = [row.get("label")] + [row.get(rank) for rank in reversed(RANKS)]
        return next((float(weights[n]) for n in names if n in weights), 1.0)

    values = np.array([weight(row) for row in classes])
    return values / values.sum()


def conformal(
    features, weights, labels: np.ndarray, photo_ids, class_rows: list[dict], settings: dict
) -> list[dict]:
    """Coverage, macro-coverage (weighted for wpas) and mean set size per method and alpha."""
    from workflow_scripts.evaluate.zeroshot import probabilities

    calibrating = in_calibration(photo_ids, settings["salt"], settings["calibration_fraction"])
    if calibrating.all() or not calibrating.any():
        return []  # one part is empty: nothing to calibrate or to measure
    classes, weighted = weights.shape[1], class_weights(class_rows, settings["class_weights"])
    calibration_labels, test_labels = labels[calibrating], labels[~calibrating]
    true = np.concatenate(
        [
            batch[np.arange(len(batch)), calibration_labels[start : start + len(batch)]]
            for start, batch in probabilities(features, weights, calibrating)
        ]
    )
    alphas = sorted(set(settings["alphas"]) | {settings["alpha"]})
    methods = METHODS if settings["class_weights"] else METHODS[:-1]  # weighted PAS needs weights
    calibrations = {
        (method, alpha): calibrate(true, calibration_labels, classes, alpha, method, weighted)
        for method in methods
        for alpha in alphas
    }
    # per class, the test images covered and their set sizes: summed batch by batch
    covered = {key: np.zeros(classes) for key in calibrations}
    sizes = {key: 0 for key in calibrations}
    for start, batch in probabilities(features, weights, ~calibrating):
        batch_labels = test_labels[start : start + len(batch)]
        for key, calibration in calibrations.items():
            sets = prediction_sets(batch, calibration)
            covered[key] += np.bincount(
                batch_labels, weights=sets[np.arange(len(batch)), batch_labels], minlength=classes
            )
            sizes[key] += int(sets.sum())
    counts = np.bincount(test_labels, minlength=classes)
    return [
        {
            "method": method,
            "alpha": alpha,
            "calibration_images": int(calibrating.sum()),
            "test_images": int(len(test_labels)),
            **{
                k: round(v, 6)
                for k, v in set_report(
                    covered[method, alpha],
                    counts,
                    sizes[method, alpha],
                    weighted if method == "wpas" else None,
                ).items()
            },
        }
        for method, alpha in calibrations
    ]


def predictions_table(
    photo_ids, labels: np.ndarray, ranked: np.ndarray, scores: np.ndarray
) -> pa.Table:
    order = np.argsort(np.asarray(photo_ids), kind="stable")
    return pa.table(
        {
            "photo_id": np.asarray(photo_ids)[order],
            "label": labels[order],
            "top_ids": ranked[order].tolist(),
            "top_scores": np.round(scores[order], 6).tolist(),
        }
    )


def levels(
    network,
    tokenizer,
    features,
    benchmark: Benchmark,
    precision: str,
    encoded: dict | None = None,
) -> tuple[list[dict], pa.Table]:
    """Table 8: accuracy per taxonomic level and name mode, and the predictions behind it.
    `encoded`: the network's text batches encoded so far (zeroshot.classifier)."""
    from workflow_scripts.evaluate.zeroshot import classifier, top_k

    records, tables = [], []
    for level in RANKS:
        labels, class_rows = benchmark.lineage_classes(level)
        for mode in NAME_MODES:
            names = [class_name(row, level, mode) for row in class_rows]
            ranked, scores = top_k(
                features,
                classifier(network, tokenizer, names, precision=precision, encoded=encoded),
                TOP_K,
            )
            records.append(
                {
                    "level": level,
                    "name_mode": mode,
                    **benchmark_metrics(ranked, labels, len(class_rows)),
                }
            )
            table = predictions_table(benchmark.keys, labels, ranked, scores)
            tables.append(
                table.add_column(0, "level", pa.array([level] * len(table))).add_column(
                    1, "name_mode", pa.array([mode] * len(table))
                )
            )
    return records, pa.concat_tables(tables)


def evaluate_benchmark(
    model: tuple,
    name: str,
    benchmark: Benchmark,
    settings: dict,
    staging: Path,
    with_levels: bool = False,
    encoded: dict | None = None,
) -> dict:
    """One benchmark: its predictions (and levels) into `staging`; returns its metrics, conformal
    records and levels. `model`: load_model()'s (network, preprocess, tokenizer); `encoded`: its
    text batches encoded so far (zeroshot.classifier), kept across benchmarks."""
    from workflow_scripts.evaluate.zeroshot import classifier, encode_images, top_k

    network, preprocess, tokenizer = model
    if not len(benchmark.keys):
        raise EvaluateError(
            f"benchmark {name}: no images to evaluate (an empty subset?): remove it from "
            f"config evaluate.benchmarks, or use more data"
        )
    features = encode_images(
        network,
        preprocess,
        benchmark.paths,
        benchmark.locations,
        staging / f"{name}.features",
        settings["batch_size"],
        settings["workers"],
        settings["precision"],
        name,
    )
    weights = classifier(
        network, tokenizer, benchmark.class_keys, precision=settings["precision"], encoded=encoded
    )
    ranked, scores = top_k(features, weights, TOP_K)
    pq.write_table(
        predictions_table(benchmark.keys, benchmark.labels, ranked, scores),
        staging / contracts.predictions(name),
    )
    found = {
        "metrics": {
            **benchmark_metrics(ranked, benchmark.labels, len(benchmark.class_keys)),
            "name_mode": benchmark.name_mode,
            **benchmark.skipped,
        },
        "conformal": [
            {"benchmark": name, **record}
            for record in conformal(
                features,
                weights,
                benchmark.labels,
                benchmark.keys,
                benchmark.class_rows,
                settings["conformal"],
            )
        ],
        "levels": [],
    }
    if with_levels:
        found["levels"], table = levels(
            network, tokenizer, features, benchmark, settings["precision"], encoded
        )
        pq.write_table(table, staging / contracts.levels(name))
    features.path.unlink()
    return found


def evaluate(
    subsets: dict[str, tuple[Path, Path]],
    model: str,
    pretrained: str | None,
    out: Path,
    settings: dict | None = None,
) -> dict:
    """Evaluate a model on the configured benchmarks into the folder `out`: our benchmarks from
    `subsets` ({subset: (its shards folder, its table)}, contracts.subset_inputs()), the external
    ones as `settings` (config.yaml's `evaluate` section) name them."""
    from workflow_scripts.evaluate.zeroshot import load_model

    settings = evaluate_settings("evaluate", settings)
    if settings["levels_benchmark"] not in settings["benchmarks"]:
        raise EvaluateError(
            f"config evaluate.levels_benchmark {settings['levels_benchmark']!r} is not one of "
            f"evaluate.benchmarks {settings['benchmarks']}: Table 8 needs one of them"
        )
    for name in contracts.benchmark_names(settings):
        benchmark_inputs(
            name, subsets, settings
        )  # every benchmark's files given, before the model loads
    loaded = load_model(model, pretrained, settings["device"])
    encoded = {}  # the text batches the model has encoded: benchmarks and levels share many
    results = {"benchmarks": {}, "levels": [], "conformal": []}
    with building(out) as staging:
        for name in contracts.benchmark_names(settings):
            found = evaluate_benchmark(
                loaded,
                name,
                open_benchmark(name, subsets, settings),
                settings,
                staging,
                with_levels=name == settings["levels_benchmark"],
                encoded=encoded,
            )
            results["benchmarks"][name] = found["metrics"]
            results["conformal"] += found["conformal"]
            results["levels"] += found["levels"]
        scored = results["benchmarks"]
        results["weighted_average_top1"] = round(
            weighted_average(
                {n: scored[n]["top1"] for n in scored}, {n: scored[n]["classes"] for n in scored}
            ),
            6,
        )
        write_json(staging / contracts.METRICS, results)
    return results
