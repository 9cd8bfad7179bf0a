"""The long tail of images per species: the Lorenz curve, the Gini coefficient and the share of the
images the top 20% of species hold (the statistics, the data card and the genus-sampled long tail
all measure it this way)."""

from __future__ import annotations

import numpy as np


def lorenz(images_per_species: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Cumulative share of species (poorest first) vs of images; Gini; top-20% share."""
    counts = np.sort(images_per_species)
    x = np.concatenate([[0], np.arange(1, len(counts) + 1) / len(counts)])
    y = np.concatenate([[0], np.cumsum(counts) / counts.sum()])
    gini = 1 - np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]))
    top = counts[::-1][: max(1, int(np.ceil(0.2 * len(counts))))]
    return x, y, float(gini), float(top.sum() / counts.sum())
