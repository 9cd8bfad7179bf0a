"""The image stages' jobs for one subset, chained as the rules chain them (for tests): each chunk's
download, the download report; the shard order, each part, the shards."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb

from tests.conftest import REPO
from tests.project_copy import run
from tests.test_subsets import write_curated
from workflow_scripts.common import contracts
from workflow_scripts.common.config import settings
from workflow_scripts.images.download_chunk import download_chunk
from workflow_scripts.images.download_report import download_report
from workflow_scripts.images.shard_order import shard_order
from workflow_scripts.images.shards import collect


def rows(subset: Path) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{subset}')").fetchone()[0]


def store_of(folder: Path) -> Path:
    """The image store of an image folder: beside it, shared by its neighbours (a snapshot's
    subsets)."""
    return folder.parent / "store"


def download(
    subset: Path,
    folder: Path,
    images: dict | None = None,
    previous_index: Path | None = None,
    image_store: Path | None = None,
) -> dict:
    """Every download job of a subset into its image folder (its images into `image_store`, by
    default store_of(folder), reusing what `previous_index` lists); returns the download report."""
    chunks = [
        Path(contracts.chunk_folder(str(folder), contracts.chunk_name(number)))
        for number in range(contracts.url_chunks(rows(subset), settings("images", images)))
    ]
    for number, chunk in enumerate(chunks):
        download_chunk(
            subset,
            number,
            chunk,
            images,
            image_store=image_store or store_of(folder),
            previous_index=previous_index,
        )
    return download_report(chunks, folder, images)


def set_rows(subset: Path) -> dict[str, int]:
    """Rows per shard set (Train's splits, or the whole subset), as subsets_report.json counts
    them."""
    sets = contracts.shard_sets(subset.stem)
    if sets == (contracts.WHOLE,):
        return {contracts.WHOLE: rows(subset)}
    return {
        split: duckdb.sql(
            f"SELECT count(*) FROM read_parquet('{subset}') WHERE split = '{split}'"
        ).fetchone()[0]
        for split in sets
    }


def shard(
    subset: Path,
    folder: Path,
    out: Path,
    shards: dict | None = None,
    drop: dict[str, list[int]] | None = None,
    processes: int = 1,
    image_store: Path | None = None,
) -> dict:
    """Every shard job of a subset whose images are in `folder` (downloaded into `image_store`, by
    default store_of(folder)), leaving out `drop`'s photos (by reason); returns shards_report."""
    shards = settings("shards", shards)
    order = Path(contracts.shard_order(str(folder)))
    packs = image_store or store_of(folder)
    shard_order(subset, folder / contracts.DOWNLOAD_REPORT, order, packs, shards, drop)
    parts = []
    for shard_set, count in set_rows(subset).items():
        for number in range(contracts.shard_parts(count, shards)):
            parts.append(
                Path(contracts.shard_part(str(folder), shard_set, contracts.chunk_name(number)))
            )
            # its own process, as each shard job is: its workers are forked, and forking this test
            # process (torch, faiss's OpenMP threads) is not safe
            run(
                sys.executable,
                "-m",
                "workflow_scripts.images.shard_part",
                "--order",
                str(order),
                "--subset",
                str(subset),
                "--shard-set",
                shard_set,
                "--part",
                contracts.chunk_name(number),
                "--out",
                str(parts[-1]),
                "--processes",
                str(processes),
                "--settings",
                json.dumps(shards),
                cwd=REPO,
            )
    return collect(parts, order, subset, folder / contracts.DOWNLOAD_REPORT, out, shards, drop)


def snapshot_of(
    folder: Path, tables: dict[str, list[dict]], image: Callable[[dict], bytes]
) -> Path:
    """`folder` as a snapshot: each subset's table from its rows (photo URLs at https://example.org),
    the images `image(row)` served from a local mirror, downloaded and sharded as the pipeline
    does."""
    for row in (row for rows in tables.values() for row in rows):
        (folder / "mirror" / "photos" / str(row["photo_id"])).mkdir(parents=True)
        (folder / "mirror" / "photos" / str(row["photo_id"]) / "medium.jpg").write_bytes(image(row))
    for subset, rows in tables.items():
        table = Path(contracts.subset_table(str(folder), subset))
        table.parent.mkdir(exist_ok=True)
        write_curated(rows, table)
        download(
            table,
            folder / "images" / subset,
            {"url_rewrite": {"from": "https://example.org", "to": str(folder / "mirror")}},
        )
        shard(table, folder / "images" / subset, Path(contracts.shards(str(folder), subset)))
    return folder
