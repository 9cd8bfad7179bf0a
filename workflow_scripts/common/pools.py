"""Independent tasks mapped over worker processes only where workers can pay off: a spawned worker
imports the job's modules again (about a second of CPU), so one task, or one process, runs in the
calling process. Spawned, not forked: the callers have DuckDB's threads running."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor

from tqdm import tqdm


def mapped(function: Callable, tasks: list, processes: int, *more: Iterable, desc: str) -> list:
    """[function(task, *their items in `more`) for each task], in order, with a progress bar named
    `desc`: by min(processes, tasks) spawned workers when that is more than one, else here."""
    workers = min(processes, len(tasks))
    progress = {"total": len(tasks), "desc": desc, "unit": "tar", "mininterval": 5}
    if workers <= 1:
        return list(tqdm(map(function, tasks, *more), **progress))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(tqdm(pool.map(function, tasks, *more), **progress))
