"""The order a subset's shards hold its images in, computed once from metadata: per shard set
(Train's splits, or the whole subset: contracts.shard_sets), its rows with a downloaded image (and
not left out as a duplicate of an evaluation image) in species order (taxonomic_name, photo_id),
then in the paper's semi-global order (workflow_scripts.images.shuffle).

    python -m workflow_scripts.images.shard_order \\
        --subset data/snapshots/<date>/subsets/train.parquet \\
        --download data/snapshots/<date>/images/train/download_report.json \\
        --image-overlap data/snapshots/<date>/images/overlap_report.json \\
        --out data/snapshots/<date>/images/train/shard_order.parquet --store data/store \\
        [--config config.yaml]

Writes one row per sample in shard order: shard_set, position (within its set), photo_id, and where
its image is (tar, offset, size: in the image store's packs, as the manifests of the chunk folders
the download report names give them). The shard jobs each write their part of it
(workflow_scripts.images.shard_part).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.config import settings as shards_settings
from workflow_scripts.common.duck import quote
from workflow_scripts.images import store
from workflow_scripts.images.download_chunk import downloaded
from workflow_scripts.images.shuffle import semi_global_order


def located(con: duckdb.DuckDBPyConnection, download: Path, image_store: Path) -> list[str]:
    """The table `located` (photo_id, tar_id, offset, size): where each image the download report's
    chunks list is in the image store's packs; returns the packs' paths by tar_id. Paths are
    numbered, not repeated per image: 40 M images take about 1 GB."""
    downloaded(con, download)
    packs = [
        row[0] for row in con.execute("SELECT DISTINCT pack FROM successes ORDER BY 1").fetchall()
    ]
    con.register(
        "packs", pa.table({"tar_id": pa.array(range(len(packs)), pa.int32()), "pack": packs})
    )
    con.execute(
        'CREATE TABLE located AS SELECT s.photo_id, p.tar_id, s."offset", s.size '
        "FROM successes AS s JOIN packs AS p USING (pack)"
    )
    return [str(image_store / store.PACKS / pack) for pack in packs]


def shard_order(
    subset: Path,
    download: Path,
    out: Path,
    image_store: Path,
    settings: dict | None = None,
    drop: dict[str, list[int]] | None = None,
) -> int:
    """Write the order into `out` (Parquet), the images in `image_store`'s packs; `drop`: photo_ids
    to leave out, by reason. Returns the samples."""
    settings = shards_settings("shards", settings)
    con = duckdb.connect()
    tars = located(con, download, image_store)
    dropped = sorted(photo for ids in (drop or {}).values() for photo in ids)
    con.register("dropped", pa.table({"photo_id": pa.array(dropped, pa.int64())}))
    shard_set = (
        quote(contracts.WHOLE)
        if contracts.shard_sets(subset.stem) == (contracts.WHOLE,)
        else "split"
    )
    # per set, species order (taxonomic_name, photo_id): how the authors' chunk files held the rows
    # before the shuffle
    present = (
        con.execute(f"""SELECT {shard_set} AS shard_set, l.photo_id, l.tar_id, l.offset, l.size
                        FROM read_parquet({quote(subset)}) AS s JOIN located AS l USING (photo_id)
                        ANTI JOIN dropped USING (photo_id)
                        ORDER BY shard_set, s.taxonomic_name, s.photo_id""")
        .to_arrow_table()
        .combine_chunks()
    )
    _, starts = np.unique(
        present.column("shard_set").to_numpy(zero_copy_only=False), return_index=True
    )
    ranges = list(zip(starts, [*starts[1:], present.num_rows]))
    order = np.concatenate(
        [np.empty(0, np.int64)]
        + [
            start
            + semi_global_order(
                end - start, settings["window_size"], settings["segment_size"], settings["seed"]
            )
            for start, end in ranges
        ]
    )
    positions = np.concatenate(
        [np.empty(0, np.int64)] + [np.arange(end - start) for start, end in ranges]
    )
    ordered = present.take(pa.array(order, pa.int64()))
    tar = pa.DictionaryArray.from_arrays(
        ordered.column("tar_id").combine_chunks(), pa.array(tars, pa.string())
    )
    table = pa.table(
        {
            "shard_set": ordered.column("shard_set"),
            "position": pa.array(positions, pa.int64()),
            "photo_id": ordered.column("photo_id"),
            "tar": tar,
            "offset": ordered.column("offset"),
            "size": ordered.column("size"),
        }
    )
    temporary = out.with_name(out.name + ".tmp")
    pq.write_table(table, temporary)
    temporary.replace(out)
    return table.num_rows


def duplicates_of(image_overlap: Path | None, subset: str) -> dict[str, list[int]]:
    """The subset's photos the image overlap check names for leaving out of its shards, by
    reason."""
    if not image_overlap:
        return {}
    return json.loads(image_overlap.read_text())["images"]["drop_from_shards"].get(subset, {})


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="shards")
    parser.add_argument("--subset", type=Path, required=True, help="a subset Parquet")
    parser.add_argument("--download", type=Path, required=True, help="the subset's download report")
    parser.add_argument(
        "--image-overlap",
        type=Path,
        help="the image overlap report: this subset's photos to "
        "leave out as duplicates of another subset's images",
    )
    parser.add_argument("--out", type=Path, required=True, help="the order to write (Parquet)")
    parser.add_argument(
        "--store", type=Path, required=True, help="the image store's folder (packs/, index/)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="deprecated, no effect: the images are found in the chunks' manifests, not by "
        "reading tars (CHANGELOG.md)",
    )
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[args.subset, args.download, args.image_overlap]) as settings:
        samples = shard_order(
            args.subset,
            args.download,
            args.out,
            args.store,
            settings,
            duplicates_of(args.image_overlap, args.subset.stem),
        )
    print(f"{args.subset}: {samples:,} samples in shard order", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
