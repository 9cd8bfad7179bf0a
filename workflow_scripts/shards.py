"""Webdataset shards of one subset in the paper's semi-global order, with every caption type.

    python -m workflow_scripts.shards --subset data/snapshots/<date>/subsets/train.parquet \\
        --images data/snapshots/<date>/images/train --out data/snapshots/<date>/shards/train [--settings JSON]

The subset's rows are put in species order (taxonomic_name, photo_id), then in semi-global order
(workflow_scripts.shuffle). Each sample, keyed by photo_id: the downloaded image under its true
format's extension (read from its first bytes: img2dataset names every image .jpg), one
`<type>.txt` per caption type (workflow_scripts.captions) and a `.json` of the curated row. Shards
are `shard-%06d.tar` with `samples_per_shard` samples; sizes.json counts them and
shards_report.json says which photos had no downloaded image. Tar entries carry no time, so a
rerun writes the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow.compute as pc
import webdataset as wds
from tqdm import tqdm

from workflow_scripts.captions import captions
from workflow_scripts.download import statuses
from workflow_scripts.duck import quote
from workflow_scripts.files import building, throughput, write_json
from workflow_scripts.shuffle import plot_shuffle_quality, semi_global_order, shuffle_quality
from workflow_scripts.tables import write_table

DEFAULTS = {"samples_per_shard": 1000, "chunk_size": 1000, "part_size": 20, "seed": 0,  # sized for the sample
            "mixing_batch_sizes": [64, 256, 1024]}
SIGNATURES = ((b"\xff\xd8\xff", "jpg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"), (b"GIF89a", "gif"))


class ShardsError(Exception):
    """Images the shards cannot be built from; the message names the file."""


def image_format(data: bytes, where: str) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for signature, extension in SIGNATURES:
        if data.startswith(signature):
            return extension
    raise ShardsError(f"{where}: not a JPEG, PNG, GIF or WebP image (first bytes {data[:12]!r})")


def image_index(tars: Path) -> dict[int, tuple[Path, int, int]]:
    """photo_id -> (tar, offset, size) of its image in img2dataset's tars (status success only)."""
    keys = dict(duckdb.sql(f"SELECT key, photo_id FROM {statuses(tars)} WHERE status = 'success'").fetchall())
    index = {}
    for tar in sorted(tars.glob("*.tar")):
        with tarfile.open(tar) as archive:
            for member in archive:
                key, _, extension = member.name.partition(".")
                if extension != "json" and key in keys:
                    index[keys[key]] = (tar, member.offset_data, member.size)
    return index


def shard_order(subset: Path, images: Path, settings: dict, drop: list[int] = ()):
    """The subset's rows in species order, the image index, the rows with an image (not dropped)
    and the order they are written in: semi-global over those rows."""
    table = duckdb.sql(f"SELECT * FROM read_parquet({quote(subset)}) ORDER BY taxonomic_name, photo_id"
                       ).to_arrow_table()
    index = image_index(images / "tars")
    dropped = set(drop)
    present = np.array([i for i, p in enumerate(table.column("photo_id").to_pylist())
                        if p in index and p not in dropped], dtype=np.int64)
    order = present[semi_global_order(len(present), settings["chunk_size"], settings["part_size"], settings["seed"])]
    return table, index, present, order


def build(subset: Path, images: Path, out: Path, settings: dict | None = None, drop: list[int] = ()) -> dict:
    """The shards of one subset; `drop`: photo_ids left out (Train photos whose image is also in an
    evaluation subset, from the image overlap check)."""
    settings = {**DEFAULTS, **(settings or {})}
    table, index, present, order = shard_order(subset, images, settings, drop)
    chunk_size, part_size, seed = settings["chunk_size"], settings["part_size"], settings["seed"]
    photo_ids, dropped = table.column("photo_id").to_pylist(), set(drop)
    species = pc.fill_null(table.column("taxonomic_name"), "").dictionary_encode().combine_chunks().indices
    quality = shuffle_quality(species.to_numpy()[present], settings["mixing_batch_sizes"], chunk_size, part_size, seed)
    with building(out) as staging:
        sizes = write_shards(table, order, index, staging, settings["samples_per_shard"])
        write_json(staging / "sizes.json", sizes)
        report = {"samples": int(len(order)), "shards": len(sizes), "settings": settings,
                  "without_image": sorted(p for p in photo_ids if p not in index),
                  "dropped_as_duplicates": sorted(p for p in photo_ids if p in dropped)}
        write_json(staging / "shards_report.json", report)
        write_table(quality, staging / "shuffle_quality", "Species mixing per batch (the paper's Figure 5c)")
        plot_shuffle_quality(quality, f"{subset.stem}: species mixing per batch, local vs semi-global shuffling "
                             f"(chunks of {chunk_size:,}, parts of {part_size:,})", staging / "shuffle_quality.png")
    return report


def write_shards(table, order: np.ndarray, index: dict, folder: Path, per_shard: int) -> dict[str, int]:
    if not len(order):
        return {}
    files: dict[Path, object] = {}
    writer = wds.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=per_shard, maxsize=float("inf"), verbose=0,
                             mtime=0)
    progress = tqdm(total=len(order), desc=f"sharding {folder.name.removesuffix('.tmp')}", unit="sample")
    try:
        for start in range(0, len(order), 1024):
            batch = table.take(order[start:start + 1024]).to_pylist()
            progress.update(len(batch))
            for row in batch:
                tar, offset, size = index[row["photo_id"]]
                if tar not in files:
                    files[tar] = tar.open("rb")
                handle = files[tar]
                handle.seek(offset)
                image = handle.read(size)
                sample = {"__key__": str(row["photo_id"]), image_format(image, f"{tar} photo {row['photo_id']}"): image,
                          "json": json.dumps(row, sort_keys=True, default=str).encode()}
                sample.update({f"{kind}.txt": text.encode() for kind, text in captions(row).items()})
                writer.write(sample)
    finally:
        progress.close()
        writer.close()
        for handle in files.values():
            handle.close()
    shards = -(-len(order) // per_shard)
    return {f"shard-{i:06d}.tar": min(per_shard, len(order) - i * per_shard) for i in range(shards)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.shards", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help="the download stage's folder for this subset")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settings", type=json.loads, default={}, help="JSON object of shards settings")
    parser.add_argument("--image-overlap", type=Path, help="the image overlap report: this subset's photos to "
                        "leave out as duplicates of another subset's images")
    args = parser.parse_args(argv)
    drop = []
    if args.image_overlap:
        drop = json.loads(args.image_overlap.read_text())["images"]["drop_from_shards"].get(args.subset.stem, [])
    started = time.perf_counter()
    try:
        report = build(args.subset, args.images, args.out, args.settings, drop)
    except ShardsError as exc:
        print(f"shards failed: {exc}", file=sys.stderr)
        return 1
    size = sum(p.stat().st_size for p in args.out.glob("*.tar"))
    print(f"sharded {throughput(report['samples'], size, time.perf_counter() - started)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
