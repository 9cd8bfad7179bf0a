"""Wall time and peak RSS of a child process, for the bench/ scripts."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one child process run from the repository root."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        if status:
            errors.seek(0)
            raise SystemExit(f"failed: {' '.join(command)}\n{errors.read().decode(errors='replace')}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024 ** 2
