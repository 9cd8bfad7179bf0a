"""Streaming evaluation: the peak memory of evaluating one benchmark does not grow with its size.

    python bench/eval_memory.py [--sizes 50000 100000]

Each size is a synthetic benchmark in the webdataset format (64 x 48 JPEGs of 500 classes, a
metadata CSV), evaluated by `workflow_scripts.evaluate.stage.evaluate_benchmark` with the tiny
model (biotrove-tiny, random weights) in a fresh process (bench/measure.py: wall time and peak
RSS), two DataLoader workers decoding. What stays in memory per image is its id, its class and its
top-5 predictions; the images and their features are streamed (the features through a file).
Prints each size's peak RSS and seconds, and ends with `peak RSS growth per image: X B`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import measured  # noqa: E402

PER_TAR = 5_000
CLASSES = 500


def write_benchmark(folder: Path, images: int) -> dict:
    """Tars of `images` small JPEGs and their metadata CSV; returns the external benchmark spec."""
    import webdataset as wds

    rng = np.random.RandomState(0)
    palette = [rng.randint(0, 256, (6, 8, 3), dtype=np.uint8) for _ in range(64)]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["key", "label"])
        for start in range(0, images, PER_TAR):
            with wds.TarWriter(
                str(folder / f"{start // PER_TAR:06d}.tar"), encoder=False
            ) as writer:
                for key in range(start, min(images, start + PER_TAR)):
                    out = io.BytesIO()
                    Image.fromarray(palette[key % 64]).resize((64, 48), Image.BILINEAR).save(
                        out, "JPEG", quality=85
                    )
                    writer.write({"__key__": f"i{key:07d}", "jpg": out.getvalue()})
                    rows.writerow([f"i{key:07d}", f"class {key % CLASSES}"])
    return {
        "format": "webdataset",
        "images": str(folder),
        "metadata": str(folder / "metadata.csv"),
        "key_column": "key",
        "label_column": "label",
        "name_mode": "scientific",
    }


def evaluate_one(spec_path: str) -> None:
    """The measured process: one benchmark evaluated as the stage evaluates each."""
    from workflow_scripts.common.benchmarks import external_benchmark
    from workflow_scripts.common.config import settings
    from workflow_scripts.evaluate.stage import evaluate_benchmark
    from workflow_scripts.evaluate.zeroshot import load_model

    spec = json.loads(Path(spec_path).read_text())
    evaluation = settings("evaluate", {"workers": 2})
    with tempfile.TemporaryDirectory() as out:
        found = evaluate_benchmark(
            load_model("biotrove-tiny", None),
            "synthetic",
            external_benchmark(spec),
            evaluation,
            Path(out),
        )
    print(
        json.dumps({"images": found["metrics"]["images"], "top1": found["metrics"]["top1"]}),
        file=sys.stderr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs=2, default=[50_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/biotrove-bench-eval"))
    parser.add_argument("--evaluate", help=argparse.SUPPRESS)  # the measured process: a spec file
    args = parser.parse_args()
    if args.evaluate:
        return evaluate_one(args.evaluate)
    peaks = {}
    for images in args.sizes:
        folder = args.workdir / str(images)
        spec = folder / "spec.json"
        if not spec.exists():
            spec.parent.mkdir(parents=True, exist_ok=True)
            spec.write_text(json.dumps(write_benchmark(folder / "tars", images)))
        seconds, peaks[images] = measured(
            [sys.executable, "bench/eval_memory.py", "--evaluate", str(spec)]
        )
        print(
            f"{images:,} images: peak RSS {peaks[images] * 1024:,.0f} MB, {seconds:.1f} s",
            flush=True,
        )
    small, large = args.sizes
    growth = (peaks[large] - peaks[small]) * 1024**3 / (large - small)
    print(f"peak RSS growth per image: {growth:,.0f} B")


if __name__ == "__main__":
    main()
