"""The image stages scattered: the same images downloaded from a local server and sharded as one job
each, then as two jobs each running side by side, on this machine.

    python bench/images.py [--images 20000]

The images (bench/photos.py: real 500 x 375 JPEGs, 80-150 KB each) sit in a folder laid out
like the bucket, served over HTTP by one local server per run (images.photo_server, as the
sample's bucket is served).
Each job is its own process, as Snakemake runs it:
`python -m workflow_scripts.images.download_chunk` per URL chunk, the download report, the shard
order, then `python -m workflow_scripts.images.shard_part` per part. Prints each run's seconds and
CPU seconds per step, the costs per image the full-size plan (docs/measurements.md) is computed
from (the jobs' CPU, the server's apart, and the bytes written), the speedup the CPU time allows on
this machine's cores, checks that both runs wrote the same shards (and stops with an error where a
run's shards miss any image of the shard order, or there are none), and ends with `speedup: X.XX`
(one job's time over two jobs'; target >= 1.7 on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.photos import ORIGIN, prepare  # noqa: E402
from workflow_scripts.common import contracts  # noqa: E402
from workflow_scripts.images.photo_server import serving  # noqa: E402

PER_SHARD = 2_000
SHARD_SET = (
    "train"  # bench/photos.py's table is Train-like: every row in split `train`, one shard set
)


def children_cpu() -> float:
    """CPU seconds of the children (and their children) ended and waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def side_by_side(commands: list[list[str]]) -> tuple[float, float]:
    """Run the commands at once, each its own process (as parallel jobs): seconds until all end, and
    the CPU seconds they used."""
    started, cpu = time.perf_counter(), children_cpu()
    for child in [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for command in commands
    ]:
        if child.wait():
            raise SystemExit(
                f"failed: {' '.join(child.args)}\n{child.stderr.read().decode()[-2000:]}"
            )
    return time.perf_counter() - started, children_cpu() - cpu


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run(subset: Path, folder: Path, jobs: int, images: int) -> dict:
    """Download and shard the subset in `jobs` jobs at a time: seconds and CPU seconds per step (the
    server's apart), bytes downloaded and sharded, the shards' sha256."""
    shards_settings = json.dumps(
        {
            "samples_per_shard": PER_SHARD,
            "shards_per_job": -(-images // (PER_SHARD * jobs)),
            "window_size": 10_000,
            "segment_size": 500,
        }
    )
    chunks = [
        Path(contracts.chunk_folder(str(folder), contracts.chunk_name(n))) for n in range(jobs)
    ]
    parts = [
        contracts.shard_part(str(folder), SHARD_SET, contracts.chunk_name(n)) for n in range(jobs)
    ]
    order = contracts.shard_order(str(folder))
    store = folder.parent / "store"  # this run's image store
    seconds, cpu = {}, {}
    with serving(subset.parent / "bucket") as port:
        images_settings = json.dumps(
            {
                "url_rewrite": {"from": ORIGIN, "to": f"http://127.0.0.1:{port}"},
                "urls_per_job": -(-images // jobs),
                "threads": 16,
                "retry_rounds": 0,
            }
        )
        seconds["download"], cpu["download"] = side_by_side(
            [
                python(
                    "workflow_scripts.images.download_chunk",
                    "--subset",
                    str(subset),
                    "--chunk",
                    str(number),
                    "--out",
                    str(chunk),
                    "--store",
                    str(store),
                    "--settings",
                    images_settings,
                )
                for number, chunk in enumerate(chunks)
            ]
        )
        jobs_cpu = children_cpu()
    cpu["server"] = children_cpu() - jobs_cpu  # the server, ended and waited for
    steps = {
        "report": [
            python(
                "workflow_scripts.images.download_report",
                "--chunks",
                *map(str, chunks),
                "--out",
                str(folder),
                "--settings",
                images_settings,
            )
        ],
        "order": [
            python(
                "workflow_scripts.images.shard_order",
                "--subset",
                str(subset),
                "--download",
                str(folder / contracts.DOWNLOAD_REPORT),
                "--out",
                order,
                "--store",
                str(store),
                "--settings",
                shards_settings,
            )
        ],
        "shards": [
            python(
                "workflow_scripts.images.shard_part",
                "--order",
                order,
                "--subset",
                str(subset),
                "--shard-set",
                SHARD_SET,
                "--part",
                str(number),
                "--out",
                part,
                "--settings",
                shards_settings,
            )
            for number, part in enumerate(parts)
        ],
    }
    for step, commands in steps.items():
        seconds[step], cpu[step] = side_by_side(commands)
    tars = sorted(tar for part in parts for tar in Path(part).glob("*.tar"))
    written = sum(
        sum(json.loads((Path(part) / contracts.SHARD_SIZES).read_text()).values()) for part in parts
    )
    ordered = duckdb.sql(
        f"SELECT count(*) FROM '{order}' WHERE shard_set = '{SHARD_SET}'"
    ).fetchone()[0]
    if (
        not tars or written != ordered or ordered < images * 0.99
    ):  # a shard set's jobs must shard all its order
        raise SystemExit(
            f"{jobs} job(s) wrote {len(tars)} shards of {written:,} samples; the order has "
            f"{ordered:,} in shard set {SHARD_SET!r}, of {images:,} images"
        )
    return {
        "seconds": seconds,
        "cpu": cpu,
        "shards": {tar.name: hashlib.sha256(tar.read_bytes()).hexdigest() for tar in tars},
        "downloaded_bytes": sum(tar.stat().st_size for tar in store.rglob("*.tar")),
        "shard_bytes": sum(tar.stat().st_size for tar in tars),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/biotrove-bench-images"))
    args = parser.parse_args()
    workdir = args.workdir / str(args.images)
    subset = prepare(workdir, args.images)
    cores, results = len(os.sched_getaffinity(0)), {}
    for jobs in (1, 2):
        folder = workdir / f"jobs-{jobs}"
        subprocess.run(["rm", "-rf", str(folder)], check=True)
        results[jobs] = result = run(subset, folder, jobs, args.images)
        print(
            f"{jobs} job(s) at a time: "
            + ", ".join(
                f"{step} {s:.1f} s ({result['cpu'][step]:.1f} CPU-s)"
                for step, s in result["seconds"].items()
            )
            + f", local server {result['cpu']['server']:.1f} CPU-s; "
            f"{args.images / sum(result['seconds'].values()):,.0f} images/s",
            flush=True,
        )
    one = results[1]
    per_image = {
        step: 1000 * one["cpu"][step] / args.images
        for step in ("download", "server", "order", "shards")
    }
    print(
        "per image (1 job): "
        + ", ".join(f"{step} {ms:.2f} CPU-ms" for step, ms in per_image.items())
        + f"; {one['downloaded_bytes'] / args.images / 1e3:.1f} KB downloaded, "
        f"{one['shard_bytes'] / args.images / 1e3:.1f} KB in shards"
    )
    if one["shards"] != results[2]["shards"]:
        raise SystemExit("the shards differ between 1 and 2 jobs")
    print(f"same shards from 1 and 2 jobs ({len(one['shards'])} shards)")
    # the two-job run cannot end before its CPU seconds (server's included) are spread over the
    # cores
    floor = sum(results[2]["cpu"].values()) / cores
    print(
        f"at most {sum(one['seconds'].values()) / floor:.2f} on {cores} cores (the two-job run's "
        f"{sum(results[2]['cpu'].values()):.0f} CPU-s over {cores} cores)"
    )
    print(f"speedup: {sum(one['seconds'].values()) / sum(results[2]['seconds'].values()):.2f}")


if __name__ == "__main__":
    main()
