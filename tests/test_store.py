"""The image store: packs named by their bytes and read back at their offsets, a failed write that
leaves no named pack, lookups that reuse only the same key, and an index that accumulates months
and keeps the images of the last `keep` snapshots."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import duckdb
import pytest

from workflow_scripts.common.cli import StageError
from workflow_scripts.common.duck import quote, write_parquet
from workflow_scripts.common.tars import members, packing, read_images
from workflow_scripts.images.chunk_images import pack
from workflow_scripts.images.store import (
    MANIFEST_COLUMNS,
    PACKS,
    columns,
    lookup,
    write_index,
    write_pack,
)

RENDITION = "medium.jpg"


def photo(photo_id: int, width: int = 500, height: int = 375) -> bytes:
    return f"image {photo_id} {width}x{height}".encode()


def manifest(store: Path, out: Path, photos: list[tuple[int, int, int]], origin: str) -> Path:
    """A chunk's manifest of `photos` (photo_id, width, height), packed into one new pack."""
    name, found = write_pack(
        store, [(f"{i}.{w}x{h}.{RENDITION}", photo(i, w, h)) for i, w, h in photos]
    )
    rows = [
        (i, RENDITION, w, h, hashlib.sha256(photo(i, w, h)).hexdigest(), name)
        + (*found[f"{i}.{w}x{h}.{RENDITION}"], bytes(32), bytes(32), 100, origin)
        for i, w, h in photos
    ]
    return write_manifest(rows, out)


def write_manifest(rows: list[tuple], out: Path) -> Path:
    """A chunk's manifest (store.MANIFEST_COLUMNS) of these rows, in photo_id order."""
    con = duckdb.connect()
    typed = ", ".join(f'"{name}" {kind}' for name, kind in MANIFEST_COLUMNS)
    con.execute(f"CREATE TABLE m ({typed})")
    con.executemany(f"INSERT INTO m VALUES ({', '.join('?' * len(rows[0]))})", rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(con, "SELECT * FROM m ORDER BY photo_id", out)
    return out


def index_rows(path: Path) -> list[tuple]:
    return duckdb.sql(
        f"SELECT photo_id, width, height, stored, used FROM read_parquet({quote(path)})"
    ).fetchall()


def test_packs_are_content_addressed_and_read_back_at_their_offsets(tmp_path):
    images = [(f"{i}.{RENDITION}", photo(i)) for i in range(3)]
    name, found = write_pack(tmp_path, images)
    pack = tmp_path / PACKS / name
    assert name == f"{name[:2]}/{hashlib.sha256(pack.read_bytes()).hexdigest()}.tar"
    read = read_images([(str(pack), *found[member]) for member, _ in images])
    assert [data for _, data in read] == [data for _, data in images]
    written = pack.stat().st_mtime_ns
    assert write_pack(tmp_path, images) == (name, found)  # a rerun: the same name, left alone
    assert pack.stat().st_mtime_ns == written
    assert list((tmp_path / PACKS / ".tmp").iterdir()) == []


def test_a_failed_pack_write_leaves_no_named_pack(tmp_path):
    def images():
        yield "1.medium.jpg", photo(1)
        raise KeyboardInterrupt  # a job killed mid-pack

    with pytest.raises(KeyboardInterrupt):
        write_pack(tmp_path, images())
    assert [path for path in (tmp_path / PACKS).rglob("*") if path.is_file()] == []


def test_lookup_reuses_only_the_same_key(tmp_path):
    store = tmp_path / "store"
    first = manifest(store, tmp_path / "m1.parquet", [(1, 500, 375), (2, 500, 375)], "downloaded")
    gone = manifest(store, tmp_path / "m2.parquet", [(3, 500, 375)], "downloaded")
    denied = manifest(store, tmp_path / "m3.parquet", [(4, 500, 375)], "downloaded")
    con = duckdb.connect()
    index = tmp_path / "index.parquet"
    write_index(con, [first, gone, denied], None, date(2024, 8, 27), 2, store, index)
    (pack,) = duckdb.sql(f"SELECT pack FROM read_parquet({quote(gone)})").fetchone()
    (store / PACKS / pack).unlink()  # a clone that pulled the index but not the packs
    placeholder = hashlib.sha256(photo(4)).hexdigest()
    con.execute(
        "CREATE TABLE wanted AS SELECT * FROM (VALUES (1, 'medium.jpg', 500, 375), "
        "(2, 'medium.jpg', 375, 500), (3, 'medium.jpg', 500, 375), (4, 'medium.jpg', 500, 375), "
        "(5, 'medium.jpg', 500, 375)) AS t(photo_id, rendition, width, height)"
    )
    lookup(con, "wanted", index, store, frozenset({placeholder}))
    found = con.execute(
        "SELECT photo_id, origin, pack IS NOT NULL, stored FROM looked_up ORDER BY photo_id"
    ).fetchall()
    assert found == [
        (1, "reused", True, date(2024, 8, 27)),
        (2, "redownloaded", False, None),  # rotated: width and height swapped
        (3, "redownloaded", False, None),  # its pack is missing
        (4, "redownloaded", False, None),  # its bytes are a known placeholder
        (5, "downloaded", False, None),
    ]


def test_the_index_accumulates_months_and_keeps_the_last_snapshots(tmp_path):
    store = tmp_path / "store"
    months = [date(2024, 7, 27), date(2024, 8, 27), date(2024, 9, 27)]
    used = [  # photo 2 is rotated in the second month; photo 1 is last used in the first
        [(1, 500, 375), (2, 500, 375)],
        [(2, 375, 500), (3, 500, 375)],
        [(3, 500, 375)],
    ]
    previous, reports = None, []
    for month, photos in zip(months, used):
        listed = manifest(store, tmp_path / f"{month}.m.parquet", photos, "downloaded")
        out = tmp_path / f"{month}.parquet"
        reports.append(write_index(duckdb.connect(), [listed], previous, month, 2, store, out))
        previous = out
    july, august, september = months
    assert index_rows(tmp_path / f"{august}.parquet") == [
        (1, 500, 375, july, july),
        (2, 375, 500, august, august),
        (2, 500, 375, july, july),
        (3, 500, 375, august, august),
    ]
    assert index_rows(tmp_path / f"{september}.parquet") == [  # July's images expire
        (2, 375, 500, august, august),
        (3, 500, 375, august, september),  # the manifest's bytes are the stored ones: kept
    ]
    assert [(r["unused"], r["expired"]) for r in reports] == [(0, 0), (2, 0), (1, 2)]
    assert [(r["before"]["entries"], r["after"]["entries"]) for r in reports] == [
        (0, 2),
        (2, 4),
        (4, 2),
    ]
    rerun = tmp_path / "again.parquet"
    write_index(
        duckdb.connect(),
        [tmp_path / f"{september}.m.parquet"],
        tmp_path / f"{august}.parquet",
        september,
        2,
        store,
        rerun,
    )
    assert rerun.read_bytes() == (tmp_path / f"{september}.parquet").read_bytes()


def test_a_pack_mostly_unused_is_copied_and_the_new_index_names_the_copy(tmp_path):
    """Month 1 packs 30 photos; month 2 reuses three and keeps one snapshot: the pack is about
    10 % used, below store_repack_below, so the three are copied into a new pack (same bytes, same
    name on a rerun) and the index names it; with 0 nothing moves."""
    store, july, august = tmp_path / "store", date(2024, 7, 27), date(2024, 8, 27)
    first = tmp_path / "july.parquet"
    listed = manifest(store, tmp_path / "july.m.parquet", [(i, 500, 375) for i in range(1, 31)], "")
    write_index(duckdb.connect(), [listed], None, july, 1, store, first)
    reused = duckdb.sql(
        f"SELECT {columns(MANIFEST_COLUMNS[:-1])}, 'reused' "
        f"FROM read_parquet({quote(first)}) WHERE photo_id <= 3 ORDER BY photo_id"
    ).fetchall()
    second = write_manifest(reused, tmp_path / "august.m.parquet")
    (old_pack,) = {row[5] for row in reused}

    def august_index(below: float, out: Path) -> tuple[dict, list[tuple]]:
        report = write_index(duckdb.connect(), [second], first, august, 1, store, out, below)
        return report, duckdb.sql(
            f'SELECT photo_id, pack, "offset", size FROM read_parquet({quote(out)})'
        ).fetchall()

    report, rows = august_index(0.5, tmp_path / "august.parquet")
    assert [row[0] for row in rows] == [1, 2, 3] and {row[1] for row in rows} != {old_pack}
    read = read_images([(str(store / PACKS / pack), o, size) for _, pack, o, size in rows])
    assert [data for _, data in read] == [photo(i) for i in (1, 2, 3)]
    assert report["repacked"] == {"packs": 1, "images": 3, "bytes": 3 * len(photo(1))}
    assert report["after"]["packs"] == 1 and (store / PACKS / old_pack).is_file()  # gc's to remove
    again = tmp_path / "again.parquet"
    assert august_index(0.5, again)[1] == rows
    assert again.read_bytes() == (tmp_path / "august.parquet").read_bytes()
    report, rows = august_index(0.0, tmp_path / "kept.parquet")
    assert {row[1] for row in rows} == {old_pack} and report["repacked"]["packs"] == 0


def test_every_index_entry_names_an_existing_pack(tmp_path):
    store = tmp_path / "store"
    listed = manifest(store, tmp_path / "m.parquet", [(1, 500, 375)], "downloaded")
    for written in (store / PACKS).rglob("*.tar"):
        written.unlink()
    with pytest.raises(StageError, match="pack\\(s\\) named by the index are missing"):
        write_index(
            duckdb.connect(),
            [listed],
            None,
            date(2024, 8, 27),
            2,
            store,
            tmp_path / "index.parquet",
        )
    assert not (tmp_path / "index.parquet").exists()


def test_a_chunk_packs_about_pack_megabytes_each_in_photo_id_order(tmp_path):
    images = {photo_id: bytes([photo_id]) * 700_000 for photo_id in (1, 2, 3)}
    downloaded = tmp_path / "pass-0.tar"  # where img2dataset left them
    with packing(downloaded) as add:
        for photo_id, data in images.items():
            add(f"{photo_id:09d}.jpg", data)
    found = members(downloaded)
    good = [
        (photo_id, RENDITION, 500, 375, f"{photo_id:09d}", str(downloaded))
        + found[f"{photo_id:09d}.jpg"]
        for photo_id in images
    ]
    for megabytes, packs in ((1, 3), (2, 2)):
        placed = pack(good, tmp_path / str(megabytes), {"pack_megabytes": megabytes})
        assert len({name for _, name, _, _ in placed}) == packs
        read = read_images(
            [(str(tmp_path / str(megabytes) / PACKS / name), o, n) for _, name, o, n in placed]
        )
        assert [data for _, data in read] == list(images.values())
