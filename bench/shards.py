"""Sharding benchmark: the shards stage against a plain byte copy of the same images.

    python bench/shards.py [--images 60000] [--workdir /tmp/biotrove-bench-shards]   (make bench)

Input: `--images` photos of 400 species with random bytes behind a JPEG signature, sizes drawn
around 60 KB (iNaturalist's medium JPEGs are 30-150 KB), served locally and downloaded by
img2dataset as the download stage does. Then, alternately and twice each (the best of two, so
both see a warm page cache):
  shards: `python -m workflow_scripts.images.shards` with the authors' sizes (10,000 per shard,
          chunks of 50,000, parts of 1,000), one process per core;
  copy:   the same images found in img2dataset's tars and their bytes read in the same order
          and written to one file: the floor of any sharder, which must move exactly these bytes.
Prints both, their ratio (copy time / shards time; target >= 70%) and MB/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import duckdb
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import measured  # noqa: E402
from workflow_scripts.images.download import download  # noqa: E402
from workflow_scripts.images.shards import read_images, shard_order  # noqa: E402

SPECIES = 400
PROCESSES = os.cpu_count()
SETTINGS = {"samples_per_shard": 10000, "chunk_size": 50000, "part_size": 1000, "seed": 0,
            "mixing_batch_sizes": [1024, 4096]}


def prepare(workdir: Path, images: int) -> tuple[Path, Path]:
    subset, downloaded = workdir / "train.parquet", workdir / "images"
    if (downloaded / "download_report.json").exists():
        return subset, downloaded
    rng = np.random.RandomState(0)
    sizes = np.clip(rng.lognormal(np.log(55_000), 0.4, images), 8_000, 400_000).astype(int)
    for photo_id, size in enumerate(sizes, start=1):
        folder = workdir / "mirror" / "photos" / str(photo_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "medium.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(int(size) - 4))
    duckdb.sql(f"""COPY (SELECT range + 1 AS photo_id, 'https://example.org/photos/' || (range + 1) || '/medium.jpg'
                               AS photo_url, 'Animalia' AS kingdom, 'Arthropoda' AS phylum, 'Insecta' AS class,
                               'Lepidoptera' AS "order", 'Nymphalidae' AS family, 'Genus' || (range % 37) AS genus,
                               'Genus' || (range % 37) || ' species' || (range % {SPECIES}) AS species,
                               species AS scientific_name, 'common ' || species AS common_name,
                               'Animalia Arthropoda Insecta Lepidoptera Nymphalidae ' || species AS taxonomic_name,
                               'CC-BY' AS license, 'train' AS split
                        FROM range({images})) TO '{subset}' (FORMAT parquet)""")
    download(subset, downloaded, {"url_rewrite": {"from": "https://example.org", "to": str(workdir / "mirror")},
                                  "processes": 2, "threads": 32})
    return subset, downloaded


def copy(subset: Path, downloaded: Path, out: Path) -> None:
    """The copy floor: the images the shards hold, found and read in shard order as the shards
    stage does, written to one file."""
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        table, index, _, order = shard_order(subset, downloaded, SETTINGS, pool)
    with open(out, "wb") as target:
        for _, image in read_images([index[p] for p in table.column("photo_id").take(order).to_pylist()]):
            target.write(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/biotrove-bench-shards"))
    parser.add_argument("--copy", nargs=3, type=Path, metavar=("SUBSET", "IMAGES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.copy:
        return copy(*args.copy)
    workdir = args.workdir / str(args.images)
    workdir.mkdir(parents=True, exist_ok=True)
    subset, downloaded = prepare(workdir, args.images)
    size = sum(p.stat().st_size for p in (downloaded / "tars").glob("*.tar"))
    shards_command = [sys.executable, "-m", "workflow_scripts.images.shards", "--subset", str(subset),
                      "--download", str(downloaded / "download_report.json"), "--out", str(workdir / "shards"),
                      "--settings", json.dumps(SETTINGS), "--processes", str(PROCESSES)]
    copy_command = [sys.executable, "bench/shards.py", "--copy", str(subset), str(downloaded), str(workdir / "copy.bin")]
    times = {"shards": [], "copy": []}
    for _ in range(2):
        times["shards"].append(measured(shards_command)[0])
        times["copy"].append(measured(copy_command)[0])
    shards_s, copy_s = min(times["shards"]), min(times["copy"])
    print(f"{args.images:,} images, {size / 1e6:,.0f} MB of img2dataset tars; {PROCESSES} processes")
    print(f"shards: {shards_s:.2f} s ({size / 1e6 / shards_s:,.0f} MB/s, {args.images / shards_s:,.0f} images/s)"
          f"  runs {', '.join(f'{t:.2f}' for t in times['shards'])}")
    print(f"copy:   {copy_s:.2f} s ({size / 1e6 / copy_s:,.0f} MB/s)  runs {', '.join(f'{t:.2f}' for t in times['copy'])}")
    print(f"shards throughput / copy throughput: {copy_s / shards_s:.0%} (target >= 70%)")


if __name__ == "__main__":
    main()
