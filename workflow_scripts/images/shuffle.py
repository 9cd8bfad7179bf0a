"""Sample orders for the shards: the paper's semi-global shuffling, its local baseline, and how
well each mixes species into training batches (the paper's Figure 5c).

The rows come in species order (as the authors' files did). Local: shuffle within each window of
`window_size` rows. Semi-global (the authors' code, which calls a window a chunk and a segment a
part): shuffle each window, cut it into segments of `segment_size` rows, shuffle all segments
globally, and concatenate them. Seeded with numpy's
RandomState, whose streams numpy keeps stable across versions, so an order is the same bytes on
every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

QUALITY_COLUMNS = (
    "order",
    "batch_size",
    "batches",
    "distinct_species_mean",
    "distinct_species_min",
    "largest_share_mean",
    "largest_share_max",
)


def local_order(rows: int, window_size: int, seed: int) -> np.ndarray:
    """Row indices: each window of window_size rows shuffled in place, windows kept in order."""
    return _shuffled_windows(rows, window_size, np.random.RandomState(seed))


def semi_global_order(rows: int, window_size: int, segment_size: int, seed: int) -> np.ndarray:
    """Row indices: the windows shuffled, cut into segments of segment_size rows (a window's last
    segment may be shorter), and the segments shuffled globally."""
    rng = np.random.RandomState(seed)
    order = _shuffled_windows(rows, window_size, rng)
    segments = [
        order[start : min(start + segment_size, window + window_size, rows)]
        for window in range(0, rows, window_size)
        for start in range(window, min(window + window_size, rows), segment_size)
    ]
    return np.concatenate(
        [segments[i] for i in rng.permutation(len(segments))] or [np.empty(0, dtype=np.int64)]
    )


def _shuffled_windows(rows: int, window_size: int, rng: np.random.RandomState) -> np.ndarray:
    return np.concatenate(
        [
            start + rng.permutation(min(window_size, rows - start))
            for start in range(0, rows, window_size)
        ]
        or [np.empty(0, dtype=np.int64)]
    )


def batch_mixing(species: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per full batch of the given order: distinct species, and the largest one species' share."""
    batches = len(species) // batch_size
    if not batches:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    codes = np.unique(species[: batches * batch_size], return_inverse=True)[1].astype(np.int64)
    kinds = int(codes.max()) + 1
    pairs, counts = np.unique(
        np.repeat(np.arange(batches), batch_size) * kinds + codes, return_counts=True
    )
    batch_of_pair = pairs // kinds  # sorted, so each batch's pairs are one run
    starts = np.flatnonzero(np.r_[True, batch_of_pair[1:] != batch_of_pair[:-1]])
    return np.bincount(batch_of_pair, minlength=batches), np.maximum.reduceat(
        counts, starts
    ) / batch_size


def shuffle_quality(
    species: np.ndarray, batch_sizes: list[int], window_size: int, segment_size: int, seed: int
) -> pd.DataFrame:
    """Figure 5c as a table: for the local and the semi-global order of rows in species order, per
    batch size, the distinct species and the largest one species' share over all full batches."""
    orders = {
        "local": local_order(len(species), window_size, seed),
        "semi_global": semi_global_order(len(species), window_size, segment_size, seed),
    }
    rows = []
    for name, order in orders.items():
        for batch_size in batch_sizes:
            distinct, largest = batch_mixing(species[order], batch_size)
            if len(distinct):
                rows.append(
                    {
                        "order": name,
                        "batch_size": batch_size,
                        "batches": len(distinct),
                        "distinct_species_mean": round(float(distinct.mean()), 3),
                        "distinct_species_min": int(distinct.min()),
                        "largest_share_mean": round(float(largest.mean()), 4),
                        "largest_share_max": round(float(largest.max()), 4),
                    }
                )
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


def plot_shuffle_quality(quality: pd.DataFrame, title: str, path: Path) -> None:
    from workflow_scripts.common.plots import plt, save  # matplotlib only where a figure is drawn

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, colour in (("local", "tab:red"), ("semi_global", "tab:blue")):
        mine = quality[quality.order == name]
        left.plot(
            mine.batch_size, mine.distinct_species_mean, "o-", color=colour, label=f"{name} (mean)"
        )
        left.plot(
            mine.batch_size,
            mine.distinct_species_min,
            "o:",
            color=colour,
            label=f"{name} (worst batch)",
        )
        right.plot(
            mine.batch_size, mine.largest_share_mean, "o-", color=colour, label=f"{name} (mean)"
        )
        right.plot(
            mine.batch_size,
            mine.largest_share_max,
            "o:",
            color=colour,
            label=f"{name} (worst batch)",
        )
    left.set_ylabel("distinct species per batch")
    right.set_ylabel("largest one species' share of a batch")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)
