"""Zero-shot evaluation of one model on a snapshot's benchmarks (Tables 5, 8, 9 read its output).

Benchmarks: Train's test split (classes: every Train species), Balanced, Unseen (classes: their
species, by scientific name), LifeStages (classes: its labels, "{common name} {stage}") and the
configured external benchmarks. Each benchmark's images are encoded once; then, in `--out`:
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
from workflow_scripts.common.cli import StageError
from workflow_scripts.common.config import settings as evaluate_settings
from workflow_scripts.common.files import building, write_json
from workflow_scripts.evaluate.benchmarks import (LEVELS, NAME_MODES, SUBSET_BENCHMARKS, Benchmark, class_name,
                                                  external_benchmark, lineage, subset_benchmark)
from workflow_scripts.evaluate.metrics import (calibrate, macro_accuracy, prediction_sets, set_report, top_k_hits,
                                               weighted_average, wilson)

TOP_K = 5
METHODS = ("softmax", "class_conditional", "pas", "wpas")


class EvaluateError(StageError):
    """A benchmark or a setting evaluation cannot work with; the message says what to change."""


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
        return int.from_bytes(hashlib.sha256(f"{salt}:{photo_id}".encode()).digest()[:8], "big") / 2 ** 64

    return np.array([share(photo_id) < fraction for photo_id in photo_ids], dtype=bool)


def class_weights(classes: list[dict], weights: dict[str, float]) -> np.ndarray:
    """Per class, the configured weight of the most specific name in its lineage (or its label)
    that has one, else 1; normalised to sum 1."""
    def weight(row: dict) -> float:
        names = [row.get("label")] + [row.get(rank) for rank in reversed(LEVELS)]
        return next((float(weights[n]) for n in names if n in weights), 1.0)

    values = np.array([weight(row) for row in classes])
    return values / values.sum()


def conformal(features: np.ndarray, weights, labels: np.ndarray, photo_ids: list, class_rows: list[dict],
              settings: dict) -> list[dict]:
    """Coverage, macro-coverage (weighted for wpas) and mean set size per method and alpha."""
    from workflow_scripts.evaluate.zeroshot import probabilities

    calibrating = in_calibration(photo_ids, settings["salt"], settings["calibration_fraction"])
    if calibrating.all() or not calibrating.any():
        return []  # one part is empty: nothing to calibrate or to measure
    classes, weighted = weights.shape[1], class_weights(class_rows, settings["class_weights"])
    true = np.concatenate([chunk[np.arange(len(chunk)), labels[calibrating][start:start + len(chunk)]]
                           for start, chunk in probabilities(features[calibrating], weights)])
    alphas = sorted(set(settings["alphas"]) | {settings["alpha"]})
    methods = METHODS if settings["class_weights"] else METHODS[:-1]  # weighted PAS needs weights
    calibrations = {(method, alpha): calibrate(true, labels[calibrating], classes, alpha, method, weighted)
                    for method in methods for alpha in alphas}
    test_labels = labels[~calibrating]
    covered = {key: np.zeros(len(test_labels), bool) for key in calibrations}
    sizes = {key: np.zeros(len(test_labels), np.int64) for key in calibrations}
    for start, chunk in probabilities(features[~calibrating], weights):
        rows = slice(start, start + len(chunk))
        for key, calibration in calibrations.items():
            sets = prediction_sets(chunk, calibration)
            covered[key][rows], sizes[key][rows] = sets[np.arange(len(chunk)), test_labels[rows]], sets.sum(axis=1)
    return [{"method": method, "alpha": alpha, "calibration_images": int(calibrating.sum()),
             "test_images": int(len(test_labels)),
             **{k: round(v, 6) for k, v in set_report(covered[method, alpha], sizes[method, alpha], test_labels,
                                                      weighted if method == "wpas" else None).items()}}
            for method, alpha in calibrations]


def predictions_table(photo_ids: list, labels: np.ndarray, ranked: np.ndarray, scores: np.ndarray) -> pa.Table:
    order = sorted(range(len(photo_ids)), key=lambda i: photo_ids[i])
    return pa.table({"photo_id": [photo_ids[i] for i in order], "label": labels[order],
                     "top_ids": ranked[order].tolist(), "top_scores": np.round(scores[order], 6).tolist()})


def classes_of(rows: list[dict], class_rows: list[dict], key) -> tuple[list, np.ndarray, list[dict]]:
    """(sorted class keys, each row's class id, a row per class) for `key(row)`."""
    first = {}
    for row in class_rows:
        first.setdefault(key(row), row)
    keys = sorted(first)
    ids = {k: number for number, k in enumerate(keys)}
    return keys, np.array([ids[key(row)] for row in rows], dtype=np.int64), [first[k] for k in keys]


def levels(network, tokenizer, features: np.ndarray, benchmark: Benchmark) -> tuple[list[dict], pa.Table]:
    """Table 8: accuracy per taxonomic level and name mode, and the predictions behind it."""
    from workflow_scripts.evaluate.zeroshot import classifier, top_k

    records, tables = [], []
    photo_ids = [row["photo_id"] for row in benchmark.rows]
    for level in LEVELS:
        _, labels, class_rows = classes_of(benchmark.rows, benchmark.class_rows, lambda row: lineage(row, level))
        for mode in NAME_MODES:
            ranked, scores = top_k(features, classifier(network, tokenizer,
                                                        [class_name(row, level, mode) for row in class_rows]), TOP_K)
            records.append({"level": level, "name_mode": mode, **benchmark_metrics(ranked, labels, len(class_rows))})
            table = predictions_table(photo_ids, labels, ranked, scores)
            tables.append(table.add_column(0, "level", pa.array([level] * len(table)))
                          .add_column(1, "name_mode", pa.array([mode] * len(table))))
    return records, pa.concat_tables(tables)


def open_benchmark(name: str, snapshot: Path, settings: dict) -> Benchmark:
    if name in SUBSET_BENCHMARKS:
        return subset_benchmark(Path(contracts.shards(str(snapshot), name)), name)
    return external_benchmark(settings["external"][name])


def evaluate(snapshot: Path, model: str, pretrained: str | None, out: Path, settings: dict | None = None) -> dict:
    """Evaluate a model on a snapshot's benchmarks (its shards/) into the folder `out`; `settings`:
    config.yaml's `evaluate` section."""
    from workflow_scripts.evaluate.zeroshot import classifier, encode_images, load_model, top_k

    settings = evaluate_settings("evaluate", settings)
    names = contracts.benchmark_names(settings)
    if settings["levels_benchmark"] not in settings["benchmarks"]:
        raise EvaluateError(f"config evaluate.levels_benchmark {settings['levels_benchmark']!r} is not one of "
                         f"evaluate.benchmarks {settings['benchmarks']}: Table 8 needs one of them")
    network, preprocess, tokenizer = load_model(model, pretrained, settings["device"])
    results = {"benchmarks": {}, "levels": [], "conformal": []}
    with building(out) as staging:
        for name in names:
            benchmark = open_benchmark(name, snapshot, settings)
            features = encode_images(network, preprocess, benchmark.images, settings["batch_size"])
            if not benchmark.rows:
                raise EvaluateError(f"benchmark {name}: no images to evaluate (an empty subset?): remove it from "
                                 f"config evaluate.benchmarks, or use more data")
            class_keys, labels, class_rows = classes_of(benchmark.rows, benchmark.class_rows,
                                                        lambda row: row[benchmark.label_column])
            weights = classifier(network, tokenizer, class_keys)
            ranked, scores = top_k(features, weights, TOP_K)
            photo_ids = [row["photo_id"] for row in benchmark.rows]
            pq.write_table(predictions_table(photo_ids, labels, ranked, scores),
                           staging / contracts.predictions(name))
            results["benchmarks"][name] = {**benchmark_metrics(ranked, labels, len(class_keys)),
                                           "name_mode": benchmark.name_mode, **benchmark.skipped}
            results["conformal"] += [{"benchmark": name, **record} for record in conformal(
                features, weights, labels, photo_ids, class_rows, settings["conformal"])]
            if name == settings["levels_benchmark"]:
                results["levels"], table = levels(network, tokenizer, features, benchmark)
                pq.write_table(table, staging / contracts.levels(name))
        scored = results["benchmarks"]
        results["weighted_average_top1"] = round(weighted_average(
            {n: scored[n]["top1"] for n in scored}, {n: scored[n]["classes"] for n in scored}), 6)
        write_json(staging / contracts.METRICS, results)
    return results
