"""The image stages' jobs for one subset, chained as the rules chain them (for tests): each chunk's
download, the download report; the shard order, each part, the shards."""

from __future__ import annotations

from pathlib import Path

import duckdb

from workflow_scripts.common import contracts
from workflow_scripts.common.config import settings
from workflow_scripts.images.collect import collect
from workflow_scripts.images.download import download_chunk
from workflow_scripts.images.download_report import download_report
from workflow_scripts.images.order import shard_order
from workflow_scripts.images.shards import write_part


def rows(subset: Path) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{subset}')").fetchone()[0]


def download(subset: Path, folder: Path, images: dict | None = None) -> dict:
    """Every download job of a subset into its image folder; returns the download report."""
    chunks = [Path(contracts.chunk_folder(str(folder), contracts.chunk_name(number)))
              for number in range(contracts.url_chunks(rows(subset), settings("images", images)))]
    for number, chunk in enumerate(chunks):
        download_chunk(subset, number, chunk, images)
    return download_report(chunks, folder, images)


def set_rows(subset: Path) -> dict[str, int]:
    """Rows per shard set (Train's splits, or the whole subset), as subsets_report.json counts them."""
    sets = contracts.shard_sets(subset.stem)
    if sets == (contracts.WHOLE,):
        return {contracts.WHOLE: rows(subset)}
    return {split: duckdb.sql(f"SELECT count(*) FROM read_parquet('{subset}') WHERE split = '{split}'").fetchone()[0]
            for split in sets}


def shard(subset: Path, folder: Path, out: Path, shards: dict | None = None, drop: dict[str, list[int]] | None = None,
          processes: int = 1) -> dict:
    """Every shard job of a subset whose images are in `folder` (downloaded), leaving out `drop`'s
    photos (by reason); returns shards_report."""
    shards = settings("shards", shards)
    order = Path(contracts.shard_order(str(folder)))
    shard_order(subset, folder / contracts.DOWNLOAD_REPORT, order, shards, drop, processes)
    parts = []
    for shard_set, count in set_rows(subset).items():
        for number in range(contracts.shard_parts(count, shards)):
            parts.append(Path(contracts.shard_part(str(folder), shard_set, contracts.chunk_name(number))))
            write_part(order, subset, shard_set, number, parts[-1], shards, processes)
    return collect(parts, order, subset, folder / contracts.DOWNLOAD_REPORT, out, shards, drop)
