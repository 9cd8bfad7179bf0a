"""The sample generator's cost against its scale: the tables of both months (no images, which are
rendered in parallel and scale with the photo count) at scale 1, 2 and 4, each in a fresh process.

    python bench/sample.py

Prints the seconds and photo rows per scale; the last line is `scale 4 / scale 1: X.XX` (target:
at most 5, a linear cost).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCALES = (1, 2, 4)


def run(scale: int, folder: Path) -> tuple[float, int]:
    settings = json.dumps({"scale": scale})
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow_scripts.sample",
            "--out",
            str(folder),
            "--settings",
            settings,
            "--no-images",
        ],
        check=True,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    rows = json.loads((folder / "planted.json").read_text())["photos_rows"]
    return seconds, max(rows.values())


def main() -> None:
    seconds = {}
    with tempfile.TemporaryDirectory() as work:
        for scale in SCALES:
            seconds[scale], rows = run(scale, Path(work) / f"scale{scale}")
            print(
                f"scale {scale}: {seconds[scale]:.1f} s, {rows:,} photo rows in the newer month",
                flush=True,
            )
    print(f"scale 4 / scale 1: {seconds[4] / seconds[1]:.2f}")


if __name__ == "__main__":
    main()
