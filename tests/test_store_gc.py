"""The image store's garbage collection (images/store_gc.py): it deletes the packs no kept index
names and the stale temporary files, keeps what a running or unindexed job may own, refuses while a
download is in progress, and measures the packs it keeps half dead."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest

from tests.test_store import write_manifest
from workflow_scripts.common.cli import StageError
from workflow_scripts.common.duck import quote
from workflow_scripts.images import store_gc
from workflow_scripts.images.store import PACKS, write_index, write_pack

RENDITION = "medium.jpg"
MONTHS = (date(2024, 7, 27), date(2024, 8, 27), date(2024, 9, 27))
HOUR = 3600


def image(photo_id: int, size: int, version: int = 0) -> bytes:
    return f"image {photo_id} v{version} ".encode().ljust(size, b".")


def new_pack(store: Path, images: dict[int, bytes]) -> tuple[str, dict[int, tuple]]:
    """A pack of `images` {photo_id: bytes}; each one's manifest row (origin downloaded)."""
    name, found = write_pack(store, [(f"{i}.{RENDITION}", data) for i, data in images.items()])
    return name, {
        i: (i, RENDITION, 500, 375, hashlib.sha256(data).hexdigest(), name)
        + (*found[f"{i}.{RENDITION}"], bytes(32), bytes(32), 100, "downloaded")
        for i, data in images.items()
    }


def reused(row: tuple) -> tuple:
    return (*row[:-1], "reused")


def indexed_packs(index: Path) -> set[str]:
    query = f"SELECT DISTINCT pack FROM read_parquet({quote(index)})"
    return {pack for (pack,) in duckdb.sql(query).fetchall()}


def on_disk(store: Path) -> set[str]:
    return {
        path.relative_to(store / PACKS).as_posix()
        for path in (store / PACKS).rglob("*")
        if path.is_file()
    }


@pytest.fixture
def built(tmp_path) -> dict:
    """A store over three months, indexed with store_snapshots 2, its files' times set:

    July: pack a (photos 1, 2), pack p (6, large, and 8, small), pack x (9).
    August: pack b (3 new; 6 and 9 downloaded again under the same key, as for a placeholder),
      reuses 2 from a and 8 from p; its index still holds July's photo 1 (a).
    September: pack c (4), reuses 3 (b) and 8 (p); photo 1 expires.
    So August's and September's indexes name a, b, c and p (p's photo 6 no longer: half dead), and
    only July's names x. Besides: an orphan pack written before the indexes, a young one written
    after, an old temporary file and a young one."""
    store, now = tmp_path / "store", time.time()
    a, in_a = new_pack(store, {1: image(1, 4000), 2: image(2, 4000)})
    p, in_p = new_pack(store, {6: image(6, 40_000), 8: image(8, 1000)})
    x, in_x = new_pack(store, {9: image(9, 1000)})
    b, in_b = new_pack(store, {3: image(3, 2000), 6: image(6, 40_000, 1), 9: image(9, 1000, 1)})
    c, in_c = new_pack(store, {4: image(4, 3000)})
    orphan, _ = new_pack(store, {5: image(5, 5000)})  # a killed job's: no index names it
    used = [
        [*in_a.values(), *in_p.values(), *in_x.values()],
        [*in_b.values(), reused(in_a[2]), reused(in_p[8])],
        [*in_c.values(), reused(in_b[3]), reused(in_p[8])],
    ]
    previous = None
    for month, rows in zip(MONTHS, used):
        listed = write_manifest(rows, tmp_path / "manifests" / f"{month}.parquet")
        out = store / "index" / f"{month}.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_index(duckdb.connect(), [listed], previous, month, 2, store, out)
        previous = out
    for name in (a, p, x, b, c, orphan):
        os.utime(store / PACKS / name, (now - 3 * HOUR, now - 3 * HOUR))
    for index in (store / "index").iterdir():
        os.utime(index, (now - 2 * HOUR, now - 2 * HOUR))
    young, _ = new_pack(store, {7: image(7, 2000)})  # a running job's, after the newest index
    temporary = store / PACKS / ".tmp"
    (temporary / "old.tar").write_bytes(b"killed" * 100)
    os.utime(temporary / "old.tar", (now - 2 * 24 * HOUR, now - 2 * 24 * HOUR))
    (temporary / "young.tar").write_bytes(b"writing")
    lone, _ = new_pack(tmp_path / "lone", {8: image(8, 1000)})  # p as it would be repacked
    return {
        "store": store,
        "snapshots": tmp_path / "snapshots",
        "packs": dict(a=a, p=p, x=x, b=b, c=c, orphan=orphan, young=young),
        "p_repacked": (tmp_path / "lone" / PACKS / lone).stat().st_size,
        "now": now,
    }


def size(built: dict, *names: str) -> int:
    return sum((built["store"] / PACKS / built["packs"][n]).stat().st_size for n in names)


def test_removes_the_packs_no_kept_index_names_and_old_temporary_files(built):
    store, packs = built["store"], built["packs"]
    freed = size(built, "x", "orphan") + len(b"killed" * 100)
    dead = size(built, "p") - built["p_repacked"]
    report = store_gc.collect_garbage(store, 2, built["snapshots"])
    assert on_disk(store) == {
        *(packs[n] for n in ("a", "b", "c", "p", "young")),
        ".tmp/young.tar",
    }
    for month in MONTHS[1:]:  # every pack the kept indexes name is there
        assert indexed_packs(store / "index" / f"{month}.parquet") <= on_disk(store)
    assert packs["x"] in indexed_packs(store / "index" / f"{MONTHS[0]}.parquet")
    assert report == {
        "store": str(store),
        "indexes": ["2024-08-27", "2024-09-27"],
        "dry_run": False,
        "packs_kept": 5,
        "packs_removed": 2,
        "bytes_freed": freed,
        "temporary_files_removed": 1,
        "kept_unindexed": {"newer_than_index": 1, "named_by_chunks": 0},
        "missing": 0,
        "partly_used": {"below": 0.5, "packs": 1, "dead_bytes": dead},
    }
    assert dead > 40_000  # p's photo 6, which no kept snapshot uses


def test_a_dry_run_reports_the_same_and_removes_nothing(built):
    before = on_disk(built["store"])
    report = store_gc.collect_garbage(built["store"], 2, built["snapshots"], dry_run=True)
    assert on_disk(built["store"]) == before
    assert report["dry_run"] and (report["packs_kept"], report["packs_removed"]) == (5, 2)
    assert report["temporary_files_removed"] == 1
    assert report["bytes_freed"] == size(built, "x", "orphan") + len(b"killed" * 100)


def test_keeping_three_snapshots_keeps_what_only_the_oldest_names(built):
    report = store_gc.collect_garbage(built["store"], 3, built["snapshots"])
    assert built["packs"]["x"] in on_disk(built["store"])
    assert built["packs"]["orphan"] not in on_disk(built["store"])
    assert (report["packs_kept"], report["packs_removed"]) == (6, 1)


def test_a_download_in_progress_makes_it_refuse_and_delete_nothing(built):
    partial = built["snapshots"] / "2024-10-27" / "images" / "train" / "chunks" / "00003.partial"
    partial.mkdir(parents=True)
    before = on_disk(built["store"])
    with pytest.raises(store_gc.DownloadInProgress, match=r"00003\.partial.*Let the downloads"):
        store_gc.collect_garbage(built["store"], 2, built["snapshots"])
    assert on_disk(built["store"]) == before
    assert issubclass(store_gc.DownloadInProgress, StageError)


def test_a_finished_chunk_not_yet_indexed_keeps_its_packs(built, tmp_path):
    chunk = built["snapshots"] / "2024-10-27" / "images" / "train" / "chunks" / "00000"
    orphan = built["packs"]["orphan"]
    write_manifest(
        [(5, RENDITION, 500, 375, "0" * 64, orphan, 512, 5000, b"", b"", 100, "downloaded")],
        chunk / "images.parquet",
    )
    report = store_gc.collect_garbage(built["store"], 2, built["snapshots"])
    assert orphan in on_disk(built["store"])
    assert built["packs"]["x"] not in on_disk(built["store"])
    assert report["kept_unindexed"] == {"newer_than_index": 1, "named_by_chunks": 1}


def test_a_store_without_an_index_is_refused(built):
    for index in (built["store"] / "index").iterdir():
        index.unlink()
    before = on_disk(built["store"])
    with pytest.raises(store_gc.NoIndex, match="holds no <date>.parquet index"):
        store_gc.collect_garbage(built["store"], 2, built["snapshots"])
    assert on_disk(built["store"]) == before


def test_the_cli_keeps_images_store_snapshots_by_default(built, capsys):
    store, snapshots = str(built["store"]), str(built["snapshots"])
    assert store_gc.main(["--store", store, "--snapshots", snapshots, "--dry-run"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["indexes"] == ["2024-08-27", "2024-09-27"] and report["packs_removed"] == 2
    assert store_gc.main(["--store", store, "--snapshots", snapshots, "--keep", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["indexes"] == ["2024-09-27"] and report["packs_removed"] == 2
    (built["snapshots"] / "d" / "images" / "s" / "chunks" / "00000.partial").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_:
        store_gc.main(["--store", store, "--snapshots", snapshots])
    assert exit_.value.code == 1
    assert "store_gc failed: 1 chunk download(s)" in capsys.readouterr().err
