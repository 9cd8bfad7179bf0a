"""Sample orders for the shards: the paper's semi-global shuffling, its local baseline, and how
well each mixes species into training batches (the paper's Figure 5c).

The rows come in species order (as the authors' chunk files did). Local: shuffle within each chunk
of `chunk_size` rows. Semi-global (the authors' code): shuffle each chunk, cut it into parts of
`part_size` rows, shuffle all parts globally, and concatenate them. Seeded with numpy's
RandomState, whose streams numpy keeps stable across versions, so an order is the same bytes on
every machine.
"""

from __future__ import annotations

import numpy as np


def local_order(rows: int, chunk_size: int, seed: int) -> np.ndarray:
    """Row indices: each chunk of chunk_size rows shuffled in place, chunks kept in order."""
    return _shuffled_chunks(rows, chunk_size, np.random.RandomState(seed))


def semi_global_order(rows: int, chunk_size: int, part_size: int, seed: int) -> np.ndarray:
    """Row indices: the chunks shuffled, cut into parts of part_size rows (a chunk's last part may
    be shorter), and the parts shuffled globally."""
    rng = np.random.RandomState(seed)
    order = _shuffled_chunks(rows, chunk_size, rng)
    parts = [order[start:min(start + part_size, chunk + chunk_size, rows)]
             for chunk in range(0, rows, chunk_size)
             for start in range(chunk, min(chunk + chunk_size, rows), part_size)]
    return np.concatenate([parts[i] for i in rng.permutation(len(parts))] or [np.empty(0, dtype=np.int64)])


def _shuffled_chunks(rows: int, chunk_size: int, rng: np.random.RandomState) -> np.ndarray:
    return np.concatenate([start + rng.permutation(min(chunk_size, rows - start))
                           for start in range(0, rows, chunk_size)] or [np.empty(0, dtype=np.int64)])


def batch_mixing(species: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per full batch of the given order: distinct species, and the largest one species' share."""
    batches = len(species) // batch_size
    distinct = np.empty(batches, dtype=np.int64)
    largest = np.empty(batches, dtype=np.float64)
    for b in range(batches):
        _, counts = np.unique(species[b * batch_size:(b + 1) * batch_size], return_counts=True)
        distinct[b], largest[b] = len(counts), counts.max() / batch_size
    return distinct, largest
