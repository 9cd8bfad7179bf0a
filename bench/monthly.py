"""A month after a month: the sample's two snapshots through the image steps, the first into an
empty image store, the second with the store (its previous index: the first month's), on this
machine.

    python bench/monthly.py [--scale 0.1] [--workdir /tmp/biotrove-bench-monthly]

Input (made once per workdir and scale, not timed in the comparison): the sample generated at
`--scale` with `sample.image_size: 500` (iNaturalist's medium photos are ~500 px on the long side,
and the hashing cost per image depends on it), both months fetched from its bundles, curated and
subset as tests/conftest.py's `sample_months` does (config.yaml's settings). Then, per month, the
image steps a snapshot runs, each job its own process as Snakemake starts it (rules/images.smk's
commands and config.yaml's `images`, `shards` and `overlap` sections), as many at once as the
machine's cores allow the rule's threads: `python -m workflow_scripts.images.download_chunk` per
chunk of every subset, `download_report` per subset, `store_index` (the month's store index),
`check_image_overlap` (every subset), then for `images.subsets` `shard_order`, `shard_part` per
part of every shard set and `shards`. The photos are served by one local photo server per month
(photo_server.serving, as of the month's date: the photos rotated or replaced since are served as
they were then), with `images.url_rewrite.to` set to its address, so that it logs every request
(a local folder there would be served by each download job itself, unlogged);
`images.retry_wait_seconds` is 0 (a local server does not throttle; the retry passes still run).

Prints each step's jobs, seconds and CPU seconds (the jobs and their children; the photo server's
apart) for both months side by side, what each month downloaded and reused, the month-2 requests
against the month-2 rows the store did not hold, and per-image costs; the last line is
`downloads/new: X.XX, month-2 image time/month-1: Y.YY`, where X is the month-2 requests (retries
of the same photo left out: they are printed apart) over the month-2 rows not reused (downloaded,
redownloaded or failed), 1.00 when the store serves everything it holds and every other row is
asked once, and Y the month-2 image steps' seconds over month 1's.

The default scale (0.1: ~3,600 photo rows a month, ~1,560 rows in the five subsets' download
jobs) took 5.4-6.5 minutes from an empty workdir on a shared 2-core machine at a 1-minute load of
1-6 (the sample 1.7-2.3 of them), 4.3 with the sample reused, and about 10 at a load of 5-8. At
this scale both months' times are mostly the jobs' starts (26 jobs a month; a download job that
fetches anything imports img2dataset twice): use the per-image costs to extrapolate.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workflow_scripts.common import contracts  # noqa: E402
from workflow_scripts.common.config import load_config  # noqa: E402
from workflow_scripts.curate.stage import curate  # noqa: E402
from workflow_scripts.images import chunk_images  # noqa: E402
from workflow_scripts.images.photo_server import serving  # noqa: E402
from workflow_scripts.sample.bucket import generate  # noqa: E402
from workflow_scripts.subsets.build import build  # noqa: E402

IMAGE_SIZE = 500
CORES = len(os.sched_getaffinity(0))
CONFIG = load_config(REPO / "config.yaml")
# the rules' threads (rules/images.smk), capped at the cores as `snakemake --cores` caps them
THREADS = {
    "download_chunk": CONFIG["images"]["processes"],
    "check_image_overlap": min(8, CORES),
    "shard_part": min(8, CORES),
}
STEPS = (
    "download_chunk",
    "download_report",
    "store_index",
    "check_image_overlap",
    "shard_order",
    "shard_part",
    "shards",
)


def children_cpu() -> float:
    """CPU seconds of the children (and their children) ended and waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prepare(workdir: Path, scale: float) -> tuple[Path, list[Path], dict[str, float]]:
    """The sample's bucket and both months' snapshot folders (raw/, curated/, subsets/), made once
    per workdir; the seconds each part took when it was made."""
    done, made = workdir / "prepared.json", workdir / "sample.json"
    sample = workdir / "sample"
    if not (sample / contracts.SAMPLE_PLANTED).exists():
        started = time.perf_counter()
        generate(sample, {"scale": scale, "image_size": IMAGE_SIZE}, workers=CORES)
        made.write_text(json.dumps({"sample": time.perf_counter() - started}))
    timings = json.loads(made.read_text()) if made.exists() else {}
    bucket = sample / contracts.SAMPLE_BUCKET
    months = json.loads((sample / contracts.SAMPLE_PLANTED).read_text())["months"]
    snapshots = [workdir / "months" / month for month in months]
    if done.exists():
        return bucket, snapshots, timings | json.loads(done.read_text())
    started = time.perf_counter()
    subsets = CONFIG["subsets"]
    subsets = {
        **subsets,
        "lifestages": {
            **subsets["lifestages"],
            "export": str(sample / contracts.SAMPLE_LIFESTAGES),
        },
    }
    for month, snapshot in zip(months, snapshots):
        shutil.rmtree(snapshot, ignore_errors=True)
        snapshot.mkdir(parents=True)
        bundle = f"inaturalist-open-data-{month.replace('-', '')}"
        with tarfile.open(bucket / "metadata" / f"{bundle}.tar.gz") as tar:
            tar.extractall(snapshot, filter="data")
        (snapshot / bundle).rename(snapshot / "raw")
        curate(
            snapshot / "raw",
            snapshot / "curated",
            CONFIG["curate"],
            taxonomy=bucket / contracts.TAXONOMY_ARCHIVE,
        )
        build(snapshot / "curated" / contracts.CURATED_TABLE, snapshot / "subsets", subsets)
    timings["months"] = time.perf_counter() - started
    done.write_text(json.dumps(timings))
    return bucket, snapshots, timings


def python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"workflow_scripts.images.{module}", *map(str, args)]


def jobs(step: str, commands: list[list[str]], logs: Path) -> dict:
    """Run a step's jobs, as many at once as the cores allow its threads (each its own process,
    its output in logs/): the step's jobs, seconds until all end and their CPU seconds."""
    at_once = max(1, CORES // THREADS.get(step, 1))
    logs.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "OMP_NUM_THREADS": str(THREADS.get(step, 1))}
    pending, running = list(enumerate(commands)), []
    started, cpu = time.perf_counter(), children_cpu()
    while pending or running:
        while pending and len(running) < at_once:
            number, command = pending.pop(0)
            log = logs / f"{step}-{number}.log"
            with open(log, "wb") as output:
                child = subprocess.Popen(
                    command, cwd=REPO, stdout=output, stderr=subprocess.STDOUT, env=environment
                )
            running.append((child, log))
        time.sleep(0.02)
        for child, log in [(c, g) for c, g in running if c.poll() is not None]:
            running.remove((child, log))
            if child.returncode:
                raise SystemExit(
                    f"failed: {' '.join(child.args)}\n{log.read_text(errors='replace')[-3000:]}"
                )
    return {
        "jobs": len(commands),
        "seconds": time.perf_counter() - started,
        "cpu": children_cpu() - cpu,
    }


def rows(table: Path, split: str | None = None) -> int:
    where = f" WHERE split = '{split}'" if split else ""
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{table}'){where}").fetchone()[0]


def month(
    bucket: Path, snapshot: Path, out: Path, store: Path, previous: Path | None, date: str
) -> dict:
    """One snapshot's image steps into `out`, its images into `store` (reusing what the index
    `previous` lists): per step its jobs, seconds and CPU seconds; the photo server's CPU seconds
    and request log."""
    images = {**CONFIG["images"], "retry_wait_seconds": 0}
    shards, overlap = CONFIG["shards"], CONFIG["overlap"]
    table = {
        subset: Path(contracts.subset_table(str(snapshot), subset)) for subset in contracts.SUBSETS
    }
    folder = {subset: Path(contracts.images(str(out), subset)) for subset in contracts.SUBSETS}
    chunks = {
        subset: [
            Path(contracts.chunk_folder(str(folder[subset]), contracts.chunk_name(number)))
            for number in range(contracts.url_chunks(rows(table[subset]), images))
        ]
        for subset in contracts.SUBSETS
    }
    report = {subset: folder[subset] / contracts.DOWNLOAD_REPORT for subset in contracts.SUBSETS}
    index = Path(contracts.store_index(str(store), date))
    overlap_report = Path(contracts.image_overlap_report(str(out)))
    order = {subset: contracts.shard_order(str(folder[subset])) for subset in contracts.SUBSETS}
    parts = {
        subset: [
            contracts.shard_part(str(folder[subset]), shard_set, contracts.chunk_name(number))
            for shard_set in contracts.shard_sets(subset)
            for number in range(
                contracts.shard_parts(
                    rows(table[subset], shard_set if shard_set != contracts.WHOLE else None),
                    shards,
                )
            )
        ]
        for subset in CONFIG["images"]["subsets"]
    }
    previous_option = ["--previous-index", previous] if previous else []
    log, logs, result = out / "requests.log", out / "logs", {}
    log.unlink(missing_ok=True)
    with serving(bucket, as_of=date, log=log) as port:
        settings = json.dumps(
            {**images, "url_rewrite": {**images["url_rewrite"], "to": f"http://127.0.0.1:{port}"}}
        )
        result["download_chunk"] = jobs(
            "download_chunk",
            [
                python(
                    "download_chunk",
                    "--subset",
                    table[subset],
                    "--chunk",
                    contracts.chunk_name(number),
                    "--out",
                    chunk,
                    "--store",
                    store,
                    *previous_option,
                    "--settings",
                    settings,
                    "--date",
                    date,
                )
                for subset in contracts.SUBSETS
                for number, chunk in enumerate(chunks[subset])
            ],
            logs,
        )
        mark = children_cpu()
    result["server_cpu"] = children_cpu() - mark  # the server, ended and waited for
    steps = {
        "download_report": [
            python(
                "download_report",
                "--chunks",
                *chunks[subset],
                "--out",
                folder[subset],
                "--settings",
                settings,
                "--date",
                date,
            )
            for subset in contracts.SUBSETS
        ],
        "store_index": [
            python(
                "store_index",
                "--chunks",
                *(c for s in contracts.SUBSETS for c in chunks[s]),
                "--store",
                store,
                *previous_option,
                "--out",
                index,
                "--report",
                contracts.store_report(str(store), date),
                "--settings",
                settings,
                "--date",
                date,
            )
        ],
        "check_image_overlap": [
            python(
                "check_image_overlap",
                "--subsets",
                *(table[s] for s in contracts.SUBSETS),
                "--downloads",
                *(report[s] for s in contracts.SUBSETS),
                "--out",
                overlap_report,
                "--pairs",
                f"{contracts.near_duplicates(str(out))}.csv",
                "--settings",
                json.dumps(overlap),
                "--date",
                date,
            )
        ],
        "shard_order": [
            python(
                "shard_order",
                "--subset",
                table[subset],
                "--download",
                report[subset],
                "--image-overlap",
                overlap_report,
                "--out",
                order[subset],
                "--store",
                store,
                "--settings",
                json.dumps(shards),
                "--date",
                date,
            )
            for subset in parts
        ],
        "shard_part": [
            python(
                "shard_part",
                "--order",
                order[subset],
                "--subset",
                table[subset],
                "--shard-set",
                Path(part).parent.name,
                "--part",
                Path(part).name,
                "--out",
                part,
                "--processes",
                THREADS["shard_part"],
                "--settings",
                json.dumps(shards),
                "--date",
                date,
            )
            for subset in parts
            for part in parts[subset]
        ],
        "shards": [
            python(
                "shards",
                "--parts",
                *parts[subset],
                "--order",
                order[subset],
                "--subset",
                table[subset],
                "--download",
                report[subset],
                "--image-overlap",
                overlap_report,
                "--out",
                contracts.shards(str(out), subset),
                "--settings",
                json.dumps(shards),
                "--date",
                date,
            )
            for subset in parts
        ],
    }
    for step, commands in steps.items():
        result[step] = jobs(step, commands, logs)
    result["chunks"] = [chunk for subset in contracts.SUBSETS for chunk in chunks[subset]]
    result["sharded_rows"] = sum(rows(table[subset]) for subset in parts)
    result["store_report"] = json.loads(Path(contracts.store_report(str(store), date)).read_text())
    result["log"] = log
    return result


def counts(result: dict) -> dict:
    """What a month's chunks did (their report.json summed): rows, reused, downloaded,
    redownloaded, failed (by reason; placeholders among them), requests by pass; and the server's
    requests by status."""
    total = Counter()
    failed, passes = Counter(), Counter()
    for chunk in result["chunks"]:
        report = json.loads((chunk / contracts.CHUNK_REPORT).read_text())
        total["rows"] += report["attempted"]
        total["failed"] += report["attempted"] - report["succeeded"]
        total["placeholder"] += report["placeholder"]
        total.update(report["store"])
        failed.update(report["failed_by_reason"])
        passes.update({entry["pass"]: entry["attempted"] for entry in report["passes"]})
        total["img2dataset_jobs"] += bool(report["passes"])  # a job that fetched anything
    lines = result["log"].read_text().split() if result["log"].exists() else []
    statuses = Counter(lines[1::2])
    return dict(total) | {
        "not_reused": total["rows"] - total["reused"],
        "failed_by_reason": dict(failed),
        "passes": dict(sorted(passes.items())),
        "requests": len(lines) // 2,
        "statuses": dict(sorted(statuses.items())),
    }


def requests(result: dict) -> dict:
    """The server's requests against the rows the store did not hold, photo by photo: `first`, at
    most one per such row (and every request for a photo no such row names: the store should have
    served it), `repeats` the rest (img2dataset's retries within a pass, the retry passes)."""
    wanted = Counter()  # path -> rows not reused that name it (one per subset's chunk)
    for chunk in result["chunks"]:
        wanted.update(
            dict(
                duckdb.sql(f"""SELECT regexp_extract(u.url, '^[a-z]+://[^/]+(/.*)$', 1), count(*)
                               FROM read_parquet('{chunk / contracts.CHUNK_URLS}') AS u
                               JOIN read_parquet('{chunk / chunk_images.REUSED}') AS r
                               USING (photo_id)
                               WHERE r.origin <> 'reused' GROUP BY 1""").fetchall()
            )
        )
    asked = Counter(line.rsplit(" ", 1)[0] for line in result["log"].read_text().splitlines())
    unwanted = sum(n for path, n in asked.items() if not wanted[path])
    first = sum(min(n, wanted[path]) for path, n in asked.items()) + unwanted
    return {
        "first": first,
        "repeats": sum(asked.values()) - first,
        "unwanted": unwanted,
        "never_asked": sum(n for path, n in wanted.items() if not asked[path]),
    }


def table(results: list[dict], dates: list[str]) -> list[str]:
    """The steps of both months side by side."""
    header = f"{'step':<22}" + "".join(f"{f'month {n + 1} ({d})':>30}" for n, d in enumerate(dates))
    lines = [header, f"{'':<22}" + f"{'jobs':>10}{'s':>10}{'CPU-s':>10}" * len(results)]
    for step in STEPS:
        lines.append(
            f"{step:<22}"
            + "".join(
                f"{r[step]['jobs']:>10}{r[step]['seconds']:>10.1f}{r[step]['cpu']:>10.1f}"
                for r in results
            )
        )
    lines.append(
        f"{'image steps':<22}"
        + "".join(
            f"{sum(r[s]['jobs'] for s in STEPS):>10}{image_seconds(r):>10.1f}"
            f"{sum(r[s]['cpu'] for s in STEPS):>10.1f}"
            for r in results
        )
    )
    lines.append(
        f"{'photo server':<22}" + "".join(f"{'':>20}{r['server_cpu']:>10.1f}" for r in results)
    )
    return lines


def import_cpu() -> float:
    """CPU seconds of `import img2dataset` in a fresh process (torch, albumentations, wandb)."""
    cpu = children_cpu()
    subprocess.run(
        [sys.executable, "-c", "import img2dataset"],
        check=True,
        env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"},
    )
    return children_cpu() - cpu


def image_seconds(result: dict) -> float:
    return sum(result[step]["seconds"] for step in STEPS)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=0.1, help="sample.scale (default 0.1)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/biotrove-bench-monthly"))
    args = parser.parse_args()
    workdir = args.workdir / f"scale-{args.scale:g}"
    bucket, snapshots, prepared = prepare(workdir, args.scale)
    planted = json.loads((bucket.parent / contracts.SAMPLE_PLANTED).read_text())
    dates = [snapshot.name for snapshot in snapshots]
    print(
        f"sample: scale {args.scale:g}, {IMAGE_SIZE} px photos, "
        + ", ".join(f"{planted['photos_rows'][d]:,} photo rows on {d}" for d in dates)
        + f"; {CORES} cores; "
        + ", ".join(f"{part} made in {s:.0f} s" for part, s in prepared.items())
        + " (once per workdir)",
        flush=True,
    )
    run = workdir / "run"
    shutil.rmtree(run, ignore_errors=True)
    store, results, previous = run / "store", [], None
    for date, snapshot in zip(dates, snapshots):
        load = os.getloadavg()[0]
        result = month(bucket, snapshot, run / date, store, previous, date)
        results.append(result | counts(result))
        previous = Path(contracts.store_index(str(store), date))
        print(
            f"{date}: image steps {image_seconds(result):.1f} s, "
            f"{sum(result[s]['cpu'] for s in STEPS):.1f} CPU-s (1-minute load {load:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after: the machine is shared)",
            flush=True,
        )
    for line in table(results, dates):
        print(line)
    for date, result in zip(dates, results):
        print(
            f"{date}: {result['rows']:,} rows in {len(result['chunks'])} chunks (every subset): "
            f"reused {result['reused']:,}, downloaded {result['downloaded']:,}, "
            f"redownloaded {result['redownloaded']:,}, failed {result['failed']:,} "
            f"{result['failed_by_reason'] or ''}; {result['requests']:,} requests "
            f"(statuses {result['statuses']}, per pass {result['passes']}); store after: "
            f"{result['store_report'].get('after', {})}"
        )
    one, two = results
    asked = requests(two)
    print(
        f"month 2: {two['requests']:,} requests for {two['not_reused']:,} rows not reused "
        f"({two['downloaded']:,} downloaded, {two['redownloaded']:,} redownloaded, "
        f"{two['failed']:,} failed): {asked['first']:,} first requests (of which "
        f"{asked['unwanted']:,} for photos the store held), {asked['repeats']:,} repeats of the "
        f"same photo (retries), {asked['never_asked']:,} rows never asked; "
        f"all requests / rows not reused {two['requests'] / max(1, two['not_reused']):.2f}"
    )
    if two["placeholder"]:
        print(
            f"month 2: {two['placeholder']} row(s) failed as placeholder: not reused (its key "
            f"changed with the placeholder's size, and placeholder bytes are never reused), asked "
            f"once, served and refused by the check (not retryable): in X's numerator and "
            f"denominator"
        )
    fetched = one["downloaded"] + one["redownloaded"]
    imported = import_cpu()
    starts = [2 * imported * r["img2dataset_jobs"] for r in results]
    print(
        f"download_chunk: month 1 {1000 * one['download_chunk']['cpu'] / max(1, fetched):.2f} "
        f"CPU-ms per downloaded image, "
        f"{1000 * (one['download_chunk']['cpu'] - starts[0]) / max(1, fetched):.2f} less "
        f"img2dataset's imports (its fetch, the check and PDQ hashes, packing; the server "
        f"{1000 * one['server_cpu'] / max(1, one['requests']):.2f} apart); month 2 "
        f"{two['download_chunk']['cpu']:.1f} CPU-s for {two['not_reused']:,} new rows of "
        f"{two['rows']:,}, {two['download_chunk']['cpu'] - starts[1]:.1f} less the imports (the "
        f"lookups, the new photos, the jobs' starts). img2dataset started in "
        f"{one['img2dataset_jobs']} and {two['img2dataset_jobs']} of {len(one['chunks'])} and "
        f"{len(two['chunks'])} download jobs, importing it twice each (the job and its worker: "
        f"{imported:.1f} CPU-s an import here), whatever the number of photos"
    )
    sharding = ("shard_order", "shard_part", "shards")  # over images.subsets' rows only
    per_row = {
        step: ", ".join(
            f"{1000 * r[step]['cpu'] / r['sharded_rows' if step in sharding else 'rows']:.2f}"
            for r in results
        )
        for step in STEPS[1:]
    }
    print(
        "CPU-ms per row, month 1, month 2 (steps over every row every month, the jobs' starts "
        f"included; the shard steps per row of {', '.join(CONFIG['images']['subsets'])}): "
        + "; ".join(f"{step} {ms}" for step, ms in per_row.items())
    )
    x = asked["first"] / max(1, two["not_reused"])
    y = image_seconds(two) / image_seconds(one)
    cpu = [sum(r[step]["cpu"] for step in STEPS) for r in results]
    print(
        f"month 2 / month 1: the image steps' seconds {y:.2f}, their CPU seconds "
        f"{cpu[1] / cpu[0]:.2f} (the seconds move with the machine's load)"
    )
    print(f"downloads/new: {x:.2f}, month-2 image time/month-1: {y:.2f}")


if __name__ == "__main__":
    main()
