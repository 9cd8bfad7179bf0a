"""Garbage collection of the image store (images/store.py): deletes the packs that no kept snapshot
uses, and the temporary files killed jobs left. Run by hand (make store-gc), never by a rule.

    python -m workflow_scripts.images.store_gc --store data/store [--keep N] [--dry-run] \\
        [--snapshots data/snapshots] [--config config.yaml]

Live packs are those the index files of the newest `--keep` snapshots name (default
`images.store_snapshots`: each index holds what the last that many snapshots used, so the newest
alone normally names them all), and those a finished chunk folder under --snapshots names (a month
whose index is not written yet). Every other pack under packs/ is deleted, unless it is newer than
the newest index file (a job may have written it and not yet indexed it), and so is every file in
packs/.tmp/ older than a day (a running job may be writing a younger one). It refuses while a chunk
download is in progress or was killed (a `.partial` chunk folder: it may own packs no index names
yet), and when index/ holds no index.

Packs are deleted whole, never rewritten here: the index files, which DVC versions, name images by
pack and offset, so only the build rewrites them (store_index copies the images of packs filled
less than images.store_repack_below into new ones, which the new index names; the old packs go
here once no kept index names them). The report's `partly_used` counts the kept packs whose live
images fill less than half their bytes, and the bytes those packs hold for images no kept snapshot
uses.

The report (JSON, on stdout): the indexes read, packs kept and removed, bytes freed, temporary
files removed, and partly_used; with --dry-run, the same numbers for what it would remove.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import duckdb
from tqdm import tqdm

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.duck import quote
from workflow_scripts.images.store import PACKS, member_bytes, packed_bytes

TEMPORARY = ".tmp"  # under packs/: what write_pack writes before its rename
TEMPORARY_AGE_SECONDS = 24 * 3600
PARTLY_USED = 0.5  # a kept pack whose live share is below this counts in `partly_used`
PROGRESS_FROM = 100  # packs to delete before a progress bar is worth showing
PACK_NAME = re.compile(r"([0-9a-f]{2})/(\1[0-9a-f]{62})\.tar")
DATE_NAME = re.compile(r"\d{4}-\d{2}-\d{2}")
# every subset's chunk folders under the snapshots folder, as the download jobs name them
CHUNKS = contracts.chunk_folder(contracts.images("*", "*"), "*")


class DownloadInProgress(cli.StageError):
    """A chunk download is running or was killed: it may own packs that no index names yet."""


class NoIndex(cli.StageError):
    """The store has no index: nothing tells which packs are live."""


def partial_chunks(snapshots: Path) -> list[Path]:
    """The chunk folders a download job is building (or was, when it was killed)."""
    return sorted(path for path in snapshots.glob(f"{CHUNKS}.partial") if path.is_dir())


def chunk_manifests(snapshots: Path) -> list[Path]:
    """The manifests of finished chunk folders (Snakemake temp() outputs until the shards are
    written): the packs of a month whose index is not written yet."""
    return sorted(snapshots.glob(f"{CHUNKS}/{contracts.CHUNK_IMAGES}"))


def indexes(store: Path) -> list[Path]:
    """The store's index files (contracts.store_index), oldest snapshot first."""
    pattern = Path(contracts.store_index(str(store), "*"))
    return sorted(
        path for path in pattern.parent.glob(pattern.name) if DATE_NAME.fullmatch(path.stem)
    )


def packs_on_disk(store: Path) -> dict[str, os.stat_result]:
    """Every pack under packs/ (<2 hex>/<sha256>.tar) and its stat; other files are left out."""
    found = {}
    for folder in sorted((store / PACKS).iterdir() if (store / PACKS).is_dir() else []):
        if not folder.is_dir() or folder.name == TEMPORARY:
            continue
        for entry in os.scandir(folder):
            name = f"{folder.name}/{entry.name}"
            if PACK_NAME.fullmatch(name) and entry.is_file(follow_symlinks=False):
                found[name] = entry.stat(follow_symlinks=False)
    return found


def live_member_bytes(con: duckdb.DuckDBPyConnection, live: list[Path]) -> dict[str, int]:
    """Per pack the indexes `live` name, what its live images take in it (store.member_bytes)."""
    names = ", ".join(quote(path) for path in live)
    entries = f"read_parquet([{names}], union_by_name = true)"
    return dict(con.execute(member_bytes(entries)).fetchall())


def named_packs(con: duckdb.DuckDBPyConnection, manifests: list[Path]) -> set[str]:
    if not manifests:
        return set()
    names = ", ".join(quote(path) for path in manifests)
    query = f"SELECT DISTINCT pack FROM read_parquet([{names}], union_by_name = true)"
    return {pack for (pack,) in con.execute(query).fetchall()}


def collect_garbage(
    store: Path,
    keep: int,
    snapshots: Path | None = None,
    dry_run: bool = False,
    now: float | None = None,
) -> dict:
    """Deletes the packs of `store` that neither the newest `keep` indexes nor a finished chunk
    under `snapshots` names, except those newer than the newest index file, and the temporary
    files older than a day; returns the report. A StageError, before deleting anything, while a
    chunk under `snapshots` is `.partial` or when the store has no index."""
    if keep < 1:
        raise cli.StageError(f"--keep {keep}: keep at least the newest snapshot's index (1)")
    if snapshots is not None and (partial := partial_chunks(snapshots)):
        raise DownloadInProgress(
            f"{len(partial)} chunk download(s) under {snapshots} are in progress or were killed "
            f"(first: {partial[0]}); they may own packs that no index names yet. Let the "
            "downloads finish (rerun a killed snapshot's images stage, or delete its .partial "
            "folders to give it up), then run the garbage collection again"
        )
    every_index = indexes(store)
    if not every_index:
        raise NoIndex(
            f"{Path(contracts.store_index(str(store))).parent} holds no <date>.parquet index, "
            "so nothing says which packs are live: restore the indexes (dvc pull, or dvc "
            "checkout) or build a snapshot's images first; nothing was deleted"
        )
    live = every_index[-keep:]
    newest_index_ns = max(path.stat().st_mtime_ns for path in every_index)
    con = duckdb.connect()
    used = live_member_bytes(con, live)
    chunked = named_packs(con, chunk_manifests(snapshots) if snapshots is not None else [])
    on_disk = packs_on_disk(store)

    kept, doomed, young, for_chunks = [], [], 0, 0
    for name, stat in sorted(on_disk.items()):
        if name in used:
            kept.append(name)
        elif name in chunked:
            kept.append(name)
            for_chunks += 1
        elif stat.st_mtime_ns >= newest_index_ns:  # written since the newest index: keep
            kept.append(name)
            young += 1
        else:
            doomed.append(name)

    partly, dead = 0, 0
    for name in kept:
        if name not in used:
            continue
        size = on_disk[name].st_size
        live_bytes = min(size, packed_bytes(used[name]))
        if size and live_bytes / size < PARTLY_USED:
            partly += 1
            dead += size - live_bytes

    now = time.time() if now is None else now
    temporary = store / PACKS / TEMPORARY
    stale = sorted(
        path
        for path in (temporary.iterdir() if temporary.is_dir() else [])
        if path.is_file() and path.stat().st_mtime < now - TEMPORARY_AGE_SECONDS
    )

    freed = 0
    for name in tqdm(
        doomed,
        desc="removing packs",
        unit="pack",
        file=sys.stderr,
        disable=dry_run or len(doomed) < PROGRESS_FROM,
    ):
        freed += on_disk[name].st_size
        if not dry_run:
            (store / PACKS / name).unlink(missing_ok=True)
    for path in stale:
        freed += path.stat().st_size
        if not dry_run:
            path.unlink(missing_ok=True)

    return {
        "store": str(store),
        "indexes": [path.stem for path in live],
        "dry_run": dry_run,
        "packs_kept": len(kept),
        "packs_removed": len(doomed),
        "bytes_freed": freed,  # packs and temporary files
        "temporary_files_removed": len(stale),
        "kept_unindexed": {"newer_than_index": young, "named_by_chunks": for_chunks},
        "missing": len(set(used) - set(on_disk)),  # packs the live indexes name, not on disk
        "partly_used": {"below": PARTLY_USED, "packs": partly, "dead_bytes": dead},
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="images")
    parser.add_argument("--store", type=Path, required=True, help="the image store's folder")
    parser.add_argument(
        "--keep",
        type=int,
        help="the newest this many snapshots' indexes name the live packs "
        "(default: images.store_snapshots)",
    )
    parser.add_argument(
        "--snapshots",
        type=Path,
        default=Path("data/snapshots"),
        help="where the snapshots' chunk folders are: a .partial one makes it refuse",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report what it would remove; remove nothing"
    )
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[]) as settings:
        keep = args.keep if args.keep is not None else settings["store_snapshots"]
        report = collect_garbage(args.store, keep, args.snapshots, args.dry_run)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
