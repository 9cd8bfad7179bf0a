"""Webdataset shards of one subset, one part at a time: shards.shards_per_job consecutive shards of
one shard set (Train's split, or the whole subset) in the subset's shard order
(workflow_scripts.images.shard_order), with every caption type.

    python -m workflow_scripts.images.shard_part \
        --order data/snapshots/<date>/images/train/shard_order.parquet \
        --subset data/snapshots/<date>/subsets/train.parquet --shard-set train --part 00000 \
        --out data/snapshots/<date>/images/train/parts/train/00000 [--config config.yaml]

Each sample, keyed by photo_id: the downloaded image under its true format's extension (read from
its first bytes: img2dataset names every image .jpg), one `<type>.txt` per caption type
(workflow_scripts.common.captions) and a `.json` of the curated row. Shards are `shard-%06d.tar`
of `samples_per_shard` samples, numbered across the shard set, so the parts put together
(workflow_scripts.images.shards) are the same bytes however many parts there are; sizes.json
counts the part's. Tar entries carry no time: a rerun writes the same bytes. The settings are
config.yaml's `shards` section.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path

import duckdb
from tqdm import tqdm

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.captions import captions
from workflow_scripts.common.config import settings as shards_settings
from workflow_scripts.common.duck import quote
from workflow_scripts.common.files import building, throughput, write_json
from workflow_scripts.common.tars import image_format, read_images, tar_writer


def part_range(part: int, settings: dict) -> tuple[int, int]:
    """The first shard and the first position of a part: its shards are consecutive."""
    first = part * settings["shards_per_job"]
    return first, first * settings["samples_per_shard"]


def write_part(
    order: Path,
    subset: Path,
    shard_set: str,
    part: int,
    out: Path,
    settings: dict | None = None,
    processes: int = 1,
) -> dict[str, int]:
    """Write part `part` of a shard set's shards into the folder `out`, by `processes` worker
    processes (the bytes do not depend on how many); returns its shards' sizes."""
    settings = shards_settings("shards", settings)
    per_shard = settings["samples_per_shard"]
    first_shard, start = part_range(part, settings)
    end = start + settings["shards_per_job"] * per_shard
    with (
        ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool,
        building(out) as staging,
    ):
        pool.submit(
            int
        ).result()  # forks the workers now, before DuckDB starts threads in this process
        rows = (
            duckdb.connect()
            .execute(f"""SELECT s.*, o.tar, o."offset", o.size
                                            FROM read_parquet({quote(order)}) AS o
                                            JOIN read_parquet({quote(subset)}) AS s USING (photo_id)
                                            WHERE o.shard_set = {quote(shard_set)}
                                                  AND o.position >= {start} AND o.position < {end}
                                            ORDER BY o.position""")
            .to_arrow_table()
        )
        locations = list(
            zip(*(rows.column(name).to_pylist() for name in ("tar", "offset", "size")))
        )
        rows = rows.drop_columns(["tar", "offset", "size"])
        sizes = write_shards(rows, locations, staging, first_shard, per_shard, pool, processes)
        write_json(staging / contracts.SHARD_SIZES, sizes)
    return sizes


def write_shards(
    rows,
    locations: list,
    folder: Path,
    first_shard: int,
    per_shard: int,
    pool: Executor,
    processes: int,
) -> dict[str, int]:
    """shard-%06d.tar of per_shard samples each, from number first_shard on, written in the pool (a
    few shards in flight at a time, so memory stays at a few shards' rows)."""
    sizes, pending = {}, collections.deque()
    with tqdm(
        total=len(rows), desc=f"sharding {folder.name.removesuffix('.tmp')}", unit="sample"
    ) as progress:
        for number, start in enumerate(range(0, len(rows), per_shard), start=first_shard):
            name = contracts.shard_file(number)
            pending.append(
                pool.submit(
                    write_shard,
                    folder / name,
                    rows.slice(start, per_shard),
                    locations[start : start + per_shard],
                )
            )
            sizes[name] = min(per_shard, len(rows) - start)
            while len(pending) > 2 * processes or (pending and start + per_shard >= len(rows)):
                progress.update(pending.popleft().result())
    return sizes


def write_shard(path: Path, rows, locations: list[tuple[str, int, int]]) -> int:
    """One shard: each row's image (read at its location), its captions and the row as JSON."""
    with tar_writer(path) as writer:
        for row, (tar, image) in zip(rows.to_pylist(), read_images(locations)):
            sample = {
                "__key__": str(row["photo_id"]),
                image_format(image, f"{tar} photo {row['photo_id']}"): image,
                "json": json.dumps(row, sort_keys=True, default=str).encode(),
            }
            sample.update({f"{kind}.txt": text.encode() for kind, text in captions(row).items()})
            writer.write(sample)
    return len(locations)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="shards")
    parser.add_argument("--order", type=Path, required=True, help="the subset's shard order")
    parser.add_argument("--subset", type=Path, required=True, help="the subset Parquet")
    parser.add_argument("--shard-set", default=contracts.WHOLE, help="Train's split, or `all`")
    parser.add_argument("--part", required=True, help="which part of the set (a number)")
    parser.add_argument("--out", type=Path, required=True, help="the part's folder")
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes writing shards (same bytes)"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with cli.running(args, inputs=[args.order, args.subset]) as settings:
        sizes = write_part(
            args.order,
            args.subset,
            args.shard_set,
            int(args.part),
            args.out,
            settings,
            args.processes,
        )
    shards = [args.out / name for name in sizes]
    rate = throughput(sum(sizes.values()), shards, time.perf_counter() - started)
    print(f"{args.shard_set} part {args.part}: {len(sizes)} shards, {rate}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
