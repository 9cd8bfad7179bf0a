"""Wall time and peak RSS of a child process, for the bench/ scripts.

The command runs under a fresh, small Python process (`python -m bench.measure COMMAND...`): Linux
carries a parent's peak RSS into a forked child's, so a benchmark that had just built its input
in memory would otherwise report its own peak as the command's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of one child process run from the repository root."""
    with tempfile.TemporaryFile() as errors:
        run = subprocess.run(
            [sys.executable, "-m", "bench.measure", *command],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
        if run.returncode:
            errors.seek(0)
            raise SystemExit(
                f"failed: {' '.join(command)}\n{errors.read().decode(errors='replace')}"
            )
    seconds, rss = run.stdout.split()
    return float(seconds), float(rss)


def main(command: list[str]) -> int:
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    print(time.perf_counter() - start, usage.ru_maxrss / 1024**2)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
