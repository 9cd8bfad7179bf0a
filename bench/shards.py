"""Sharding benchmark: writing the shards against a plain byte copy of the same images.

    python bench/shards.py [--images 60000] [--workdir /tmp/biotrove-bench-shards]   (make bench)

Input: `--images` photos (bench/photos.py), served locally and downloaded by img2dataset as the
download stage does, and their shard order (`python -m workflow_scripts.images.shard_order`, the
authors' sizes: 10,000 per shard, chunks of 50,000, parts of 1,000; timed once). Then, alternately
and twice each (the best of two, so both see a warm page cache):
  shards: `python -m workflow_scripts.images.shard_part`, every shard as one part, one process per
          core;
  copy:   the same images read in the same order (the order file's locations) and written to one
          file: the floor of any sharder, which must move exactly these bytes.
Prints both, their ratio (copy time / shards time; target >= 70%) and MB/s; stops with an error
where the shards miss any image of the order (shard set `train`: bench/photos.py's table is all
Train split).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import measured  # noqa: E402
from bench.photos import ORIGIN, prepare  # noqa: E402
from workflow_scripts.common import contracts  # noqa: E402
from workflow_scripts.common.tars import read_images  # noqa: E402
from workflow_scripts.images.download_chunk import download_chunk  # noqa: E402
from workflow_scripts.images.download_report import download_report  # noqa: E402

PROCESSES = os.cpu_count()
SHARD_SET = (
    "train"  # bench/photos.py's table is Train-like: every row in split `train`, one shard set
)
SETTINGS = {
    "samples_per_shard": 10000,
    "shards_per_job": 10**6,
    "window_size": 50000,
    "segment_size": 1000,
    "seed": 0,
    "mixing_batch_sizes": [1024, 4096],
}


def downloaded(workdir: Path, images: int) -> tuple[Path, Path]:
    """The subset and its image folder (one chunk downloaded, the download report), made once."""
    subset, folder = prepare(workdir, images), workdir / "images"
    if not (folder / contracts.DOWNLOAD_REPORT).exists():
        settings = {
            "url_rewrite": {"from": ORIGIN, "to": str(workdir / "bucket")},
            "urls_per_job": images,
            "processes": 2,
            "threads": 32,
        }
        chunk = Path(contracts.chunk_folder(str(folder), contracts.chunk_name(0)))
        download_chunk(subset, 0, chunk, settings, image_store=workdir / "store")
        download_report([chunk], folder, settings)
    return subset, folder


def copy(order: Path, out: Path) -> None:
    """The copy floor: the images the shards hold, read in shard order, written to one file."""
    locations = duckdb.sql(
        f"SELECT tar, \"offset\", size FROM '{order}' ORDER BY position"
    ).fetchall()
    with open(out, "wb") as target:
        for _, image in read_images(locations):
            target.write(image)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/biotrove-bench-shards"))
    parser.add_argument(
        "--copy", nargs=2, type=Path, metavar=("ORDER", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.copy:
        return copy(*args.copy)
    workdir = args.workdir / str(args.images)
    workdir.mkdir(parents=True, exist_ok=True)
    subset, folder = downloaded(workdir, args.images)
    size = sum(p.stat().st_size for p in (workdir / "store").rglob("*.tar"))  # the images
    order = contracts.shard_order(str(folder))
    order_seconds = measured(
        [
            sys.executable,
            "-m",
            "workflow_scripts.images.shard_order",
            "--subset",
            str(subset),
            "--download",
            str(folder / contracts.DOWNLOAD_REPORT),
            "--out",
            order,
            "--store",
            str(workdir / "store"),
            "--settings",
            json.dumps(SETTINGS),
        ]
    )[0]
    shards_command = [
        sys.executable,
        "-m",
        "workflow_scripts.images.shard_part",
        "--order",
        order,
        "--subset",
        str(subset),
        "--shard-set",
        SHARD_SET,
        "--part",
        "0",
        "--out",
        str(workdir / "shards"),
        "--settings",
        json.dumps(SETTINGS),
        "--processes",
        str(PROCESSES),
    ]
    copy_command = [sys.executable, "bench/shards.py", "--copy", order, str(workdir / "copy.bin")]
    ordered = duckdb.sql(
        f"SELECT count(*) FROM '{order}' WHERE shard_set = '{SHARD_SET}'"
    ).fetchone()[0]
    if ordered < args.images * 0.99:
        raise SystemExit(
            f"the order has {ordered:,} samples in shard set {SHARD_SET!r}, of "
            f"{args.images:,} images"
        )
    times = {"shards": [], "copy": []}
    for _ in range(2):
        times["shards"].append(measured(shards_command)[0])
        times["copy"].append(measured(copy_command)[0])
        written = json.loads((workdir / "shards" / contracts.SHARD_SIZES).read_text())
        if (
            not written or sum(written.values()) != ordered
        ):  # one part of every shard: the whole shard set
            raise SystemExit(
                f"the shards hold {sum(written.values()):,} samples in {len(written)} shards; the "
                f"order has {ordered:,} in shard set {SHARD_SET!r}, of {args.images:,} images"
            )
    shards_s, copy_s = min(times["shards"]), min(times["copy"])
    print(
        f"{args.images:,} images, {size / 1e6:,.0f} MB of img2dataset tars; {PROCESSES} processes; "
        f"the shard order took {order_seconds:.2f} s"
    )
    print(
        f"shards: {shards_s:.2f} s ({size / 1e6 / shards_s:,.0f} MB/s, "
        f"{args.images / shards_s:,.0f} images/s)  runs "
        f"{', '.join(f'{t:.2f}' for t in times['shards'])}"
    )
    copies = ", ".join(f"{t:.2f}" for t in times["copy"])
    print(f"copy:   {copy_s:.2f} s ({size / 1e6 / copy_s:,.0f} MB/s)  runs {copies}")
    print(f"shards throughput / copy throughput: {copy_s / shards_s:.0%} (target >= 70%)")


if __name__ == "__main__":
    main()
