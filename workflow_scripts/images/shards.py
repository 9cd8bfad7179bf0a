"""Webdataset shards of one subset in the paper's semi-global order, with every caption type.

    python -m workflow_scripts.images.shards --subset data/snapshots/<date>/subsets/train.parquet \\
        --download data/snapshots/<date>/images/train/download_report.json --out data/snapshots/<date>/shards/train \\
        [--config config.yaml]

The subset's rows are put in species order (taxonomic_name, photo_id), then in semi-global order
(workflow_scripts.images.shuffle). Each sample, keyed by photo_id: the downloaded image under its true
format's extension (read from its first bytes: img2dataset names every image .jpg), one
`<type>.txt` per caption type (workflow_scripts.common.captions) and a `.json` of the curated row. Shards
are `shard-%06d.tar` with `samples_per_shard` samples; sizes.json counts them and
shards_report.json says which photos had no downloaded image. Tar entries carry no time, so a
rerun writes the same bytes. The settings are config.yaml's `shards` section.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import sys
import tarfile
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.compute as pc
import webdataset as wds
from tqdm import tqdm

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.captions import captions
from workflow_scripts.common.config import settings as shards_settings
from workflow_scripts.common.duck import quote
from workflow_scripts.common.files import building, throughput, write_json
from workflow_scripts.common.tables import write_table
from workflow_scripts.images.download import statuses
from workflow_scripts.images.shuffle import plot_shuffle_quality, semi_global_order, shuffle_quality

SIGNATURES = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))


class ShardsError(cli.StageError):
    """Images the shards cannot be built from; the message names the file."""


def image_format(data: bytes, where: str) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for signature, extension in SIGNATURES:
        if data.startswith(signature):
            return extension
    raise ShardsError(f"{where}: not a JPEG, PNG, GIF or WebP image (first bytes {data[:12]!r})")


def tar_members(tar: Path) -> list[tuple[str, int, int]]:
    """(key, offset, size) of each image in one of img2dataset's tars."""
    with tarfile.open(tar) as archive:
        return [(m.name.partition(".")[0], m.offset_data, m.size) for m in archive
                if m.name.partition(".")[2] not in ("json", "txt")]


def image_index(tars: Path, pool: Executor) -> dict[int, tuple[Path, int, int]]:
    """photo_id -> (tar, offset, size) of its image in img2dataset's tars (status success only)."""
    keys = dict(duckdb.sql(f"SELECT key, photo_id FROM {statuses(tars)} WHERE status = 'success'").fetchall())
    paths = sorted(tars.glob("*.tar"))
    return {keys[key]: (tar, offset, size) for tar, members in zip(paths, pool.map(tar_members, paths))
            for key, offset, size in members if key in keys}


def shard_order(subset: Path, images: Path, settings: dict, pool: Executor, drop: list[int] = ()):
    """The subset's rows in species order, the image index, the rows with an image (not dropped)
    and the order they are written in: semi-global over those rows."""
    table = duckdb.sql(f"SELECT * FROM read_parquet({quote(subset)}) ORDER BY taxonomic_name, photo_id"
                       ).to_arrow_table()
    index = image_index(images / contracts.IMAGE_TARS, pool)
    dropped = set(drop)
    present = np.array([i for i, p in enumerate(table.column("photo_id").to_pylist())
                        if p in index and p not in dropped], dtype=np.int64)
    order = present[semi_global_order(len(present), settings["chunk_size"], settings["part_size"], settings["seed"])]
    return table, index, present, order


def build(subset: Path, images: Path, out: Path, settings: dict | None = None, drop: list[int] = (),
          processes: int = 1) -> dict:
    """The shards of one subset, written by `processes` worker processes (the bytes do not depend
    on how many); `drop`: photo_ids left out (Train photos whose image is also in an evaluation
    subset, from the image overlap check)."""
    settings = shards_settings("shards", settings)
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool, \
            building(out) as staging:
        pool.submit(int).result()  # forks the workers now, before DuckDB starts threads in this process
        table, index, present, order = shard_order(subset, images, settings, pool, drop)
        sizes = write_shards(table, order, index, staging, settings["samples_per_shard"], pool, processes)
        write_json(staging / contracts.SHARD_SIZES, sizes)
        photo_ids, dropped = table.column("photo_id").to_pylist(), set(drop)
        report = {"samples": int(len(order)), "shards": len(sizes), "settings": settings,
                  "without_image": sorted(p for p in photo_ids if p not in index),
                  "dropped_as_duplicates": sorted(p for p in photo_ids if p in dropped)}
        if "split" in table.column_names:  # Train: what training reads of it (train), and what it must not
            report["splits"] = dict(sorted(collections.Counter(table.column("split").take(order).to_pylist()).items()))
        write_json(staging / contracts.SHARDS_REPORT, report)
        chunk_size, part_size, seed = settings["chunk_size"], settings["part_size"], settings["seed"]
        species = pc.fill_null(table.column("taxonomic_name"), "").dictionary_encode().combine_chunks().indices
        quality = shuffle_quality(species.to_numpy()[present], settings["mixing_batch_sizes"], chunk_size, part_size,
                                  seed)
        write_table(quality, staging / "shuffle_quality", "Species mixing per batch (the paper's Figure 5c)")
        plot_shuffle_quality(quality, f"{subset.stem}: species mixing per batch, local vs semi-global shuffling "
                             f"(chunks of {chunk_size:,}, parts of {part_size:,})", staging / "shuffle_quality.png")
    return report


def write_shards(table, order: np.ndarray, index: dict, folder: Path, per_shard: int, pool: Executor,
                 processes: int) -> dict[str, int]:
    """shard-%06d.tar of per_shard samples each, in `order`, written in the pool (a few shards in
    flight at a time, so memory stays at a few shards' rows)."""
    sizes, pending = {}, collections.deque()
    with tqdm(total=len(order), desc=f"sharding {folder.name.removesuffix('.tmp')}", unit="sample") as progress:
        for number, start in enumerate(range(0, len(order), per_shard)):
            rows = table.take(order[start:start + per_shard])
            locations = [index[photo_id] for photo_id in rows.column("photo_id").to_pylist()]
            pending.append(pool.submit(write_shard, folder / f"shard-{number:06d}.tar", rows, locations))
            sizes[f"shard-{number:06d}.tar"] = len(rows)
            while len(pending) > 2 * processes or (pending and start + per_shard >= len(order)):
                progress.update(pending.popleft().result())
    return sizes


def read_images(locations: list[tuple[Path, int, int]]):
    """The bytes at each (tar, offset, size), in order, each tar opened once."""
    files = {}
    try:
        for tar, offset, size in locations:
            if tar not in files:
                files[tar] = tar.open("rb")
            files[tar].seek(offset)
            yield tar, files[tar].read(size)
    finally:
        for handle in files.values():
            handle.close()


def write_shard(path: Path, rows, locations: list[tuple[Path, int, int]]) -> int:
    """One shard: each row's image (read at its location), its captions and the row as JSON."""
    with wds.TarWriter(str(path), mtime=0, encoder=False) as writer:
        writer.tarstream.format = tarfile.USTAR_FORMAT  # webdataset 0.2.86 drops its `format` argument;
        # plain ustar headers (no pax checks) are enough for these names and sizes, and faster
        for row, (tar, image) in zip(rows.to_pylist(), read_images(locations)):
            sample = {"__key__": str(row["photo_id"]), image_format(image, f"{tar} photo {row['photo_id']}"): image,
                      "json": json.dumps(row, sort_keys=True, default=str).encode()}
            sample.update({f"{kind}.txt": text.encode() for kind, text in captions(row).items()})
            writer.write(sample)
    return len(locations)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="shards")
    parser.add_argument("--subset", type=Path, required=True, help="a subset Parquet")
    parser.add_argument("--download", type=Path, required=True,
                        help="the subset's download report, in the folder of its images (img2dataset's tars)")
    parser.add_argument("--out", type=Path, required=True, help="the folder of shards to write")
    parser.add_argument("--image-overlap", type=Path, help="the image overlap report: this subset's photos to "
                        "leave out as duplicates of another subset's images")
    parser.add_argument("--processes", type=int, default=1, help="worker processes writing shards (same bytes)")
    args = parser.parse_args(argv)
    drop = []
    if args.image_overlap:
        drop = json.loads(args.image_overlap.read_text())["images"]["drop_from_shards"].get(args.subset.stem, [])
    started = time.perf_counter()
    with cli.running(args, inputs=[args.subset, args.download, args.image_overlap]) as settings:
        report = build(args.subset, args.download.parent, args.out, settings, drop, args.processes)
    print(f"sharded {throughput(report['samples'], args.out, time.perf_counter() - started)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
