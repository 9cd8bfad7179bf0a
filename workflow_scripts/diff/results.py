"""The results side of the monthly diff: each model x benchmark x metric in both months, its delta
and whether the two 95% Wilson intervals overlap."""

from __future__ import annotations

import json
from pathlib import Path

METRICS = ("top1", "top5", "macro_top1")


def intervals_overlap(first: list[float] | None, second: list[float] | None) -> bool | None:
    if not first or not second:
        return None
    return max(first[0], second[0]) <= min(first[1], second[1])


def compared(model: str, benchmark: str, metric: str, old: dict, new: dict) -> dict:
    """One metric in both months (`old`, `new`: the benchmark's metrics, each may lack it)."""
    before, after = old.get(metric), new.get(metric)
    before_ci, after_ci = old.get(f"{metric}_ci95"), new.get(f"{metric}_ci95")
    return {
        "model": model,
        "benchmark": benchmark,
        "metric": metric,
        "previous": before,
        "current": after,
        "delta": None if before is None or after is None else round(after - before, 6),
        "previous_ci95": before_ci,
        "current_ci95": after_ci,
        "cis_overlap": intervals_overlap(before_ci, after_ci),
    }


def results_diff(previous: list[Path], current: list[Path], models: list[str]) -> list[dict]:
    """Each model x benchmark x metric in both months' evaluations (each model's metrics.json, in
    `models`' order): values, delta, and whether the 95% intervals overlap (an interval that does
    not is a change beyond sampling noise)."""
    rows = []
    for model, *files in zip(models, previous, current, strict=True):
        before, after = (json.loads(path.read_text()) for path in files)
        for benchmark in sorted(set(before["benchmarks"]) | set(after["benchmarks"])):
            old, new = (
                before["benchmarks"].get(benchmark, {}),
                after["benchmarks"].get(benchmark, {}),
            )
            rows += [
                compared(model, benchmark, metric, old, new)
                for metric in METRICS
                if metric in old or metric in new
            ]
        rows.append(
            compared(model, "weighted average", "weighted_average_top1", before, after)
            | {"metric": "top1"}
        )
    return rows
