"""The image store: images downloaded for any snapshot, kept for the next ones, so that a month
downloads and hashes only the photos it has not seen under the same key (KEY: the photo, its
rendition and the width and height the metadata gives it; a rotation swaps them, so a rotated photo
is fetched again).

Its layout works at 40 M images, with no file per image:
  packs/<2 hex>/<sha256>.tar  plain tars (tars.packing) written once and named by their own sha256:
                              a name always means the same bytes; images are read at their offsets
  index/<date>.parquet        every image kept after that snapshot (INDEX_COLUMNS), in KEY order

A pack is written under a temporary name and renamed once whole, before any index names it, so a
killed job leaves at most a temporary file or a pack that nothing names; a rerun writes the same
pack again under the same name."""

from __future__ import annotations

import hashlib
import os
import tarfile
import uuid
from collections.abc import Iterable
from datetime import date
from pathlib import Path

import duckdb

from workflow_scripts.common.cli import StageError
from workflow_scripts.common.duck import quote, write_parquet
from workflow_scripts.common.tars import members, packing, read_images

KEY_COLUMNS = (
    ("photo_id", "BIGINT"),
    ("rendition", "VARCHAR"),  # the photo_url's file name (its size and extension), and a resize
    ("width", "INTEGER"),
    ("height", "INTEGER"),
)
KEY = tuple(name for name, _ in KEY_COLUMNS)
ENTRY = (  # what an image's entry holds beside its key, as a chunk's manifest has it too
    ("sha256", "VARCHAR"),
    ("pack", "VARCHAR"),  # under packs/
    ("offset", "BIGINT"),
    ("size", "BIGINT"),
    ("hash", "BLOB"),  # PDQ (images/perceptual.py)
    ("mirrored", "BLOB"),
    ("quality", "SMALLINT"),
)
INDEX_COLUMNS = (
    *KEY_COLUMNS,
    *ENTRY,
    ("stored", "DATE"),  # the snapshot that downloaded it
    ("used", "DATE"),  # the last snapshot that used it
)
ORIGINS = ("reused", "downloaded", "redownloaded")  # redownloaded: held, but not under this key
MANIFEST_COLUMNS = (*KEY_COLUMNS, *ENTRY, ("origin", "VARCHAR"))  # a chunk's images.parquet
PACKS = "packs"
KEYS = ", ".join(KEY)  # in SQL


def columns(pairs: tuple[tuple[str, str], ...], prefix: str = "") -> str:
    return ", ".join(f'{prefix}"{name}"' for name, _ in pairs)


def no_rows(pairs: tuple[tuple[str, str], ...]) -> str:
    """SQL: an empty relation with these (name, type) columns."""
    return f"(SELECT {', '.join(f'NULL::{kind} AS {name}' for name, kind in pairs)} WHERE false)"


def write_pack(store: Path, images: Iterable[tuple[str, bytes]]) -> tuple[str, dict]:
    """A pack of (member name, bytes), in the order given: its name under packs/ and its members'
    {name: (offset, size)}."""
    packs = store / PACKS
    temporary = packs / ".tmp" / f"{uuid.uuid4().hex}.tar"
    temporary.parent.mkdir(parents=True, exist_ok=True)
    try:
        with packing(temporary) as add:
            for name, data in images:
                add(name, data)
        with open(temporary, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            os.fsync(handle.fileno())
        name = f"{digest[:2]}/{digest}.tar"
        final = packs / name
        final.parent.mkdir(exist_ok=True)
        if final.exists():  # written before (a rerun): the same bytes
            temporary.unlink()
        else:
            os.replace(temporary, final)
            folder = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(folder)  # the rename itself survives a crash
            finally:
                os.close(folder)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return name, members(final)


def member(photo_id: int, rendition: str, width: int, height: int) -> str:
    """An image's name in its pack: its key."""
    return f"{photo_id}.{width}x{height}.{rendition}"


def pack_images(
    store: Path, images: list[tuple[str, tuple[str, int, int]]], megabytes: float
) -> dict[str, tuple[str, int, int]]:
    """Packs of about `megabytes` of the `images` (member name, (file, offset, size) of its bytes),
    in the order given; returns each member's (pack, offset, size)."""
    limit, groups, size = megabytes * 2**20, [[]], 0
    for image in images:
        if groups[-1] and size + image[1][2] > limit:
            groups.append([])
            size = 0
        groups[-1].append(image)
        size += image[1][2]
    placed = {}
    for group in filter(None, groups):
        data = read_images([location for _, location in group])
        name, found = write_pack(store, zip((n for n, _ in group), (d for _, d in data)))
        placed |= {n: (name, *found[n]) for n, _ in group}
    return placed


def packed_bytes(member_bytes: int) -> int:
    """The size of a pack whose members (their headers and padded bytes) take `member_bytes`: the
    end-of-archive blocks added, rounded up to tarfile's records."""
    total = member_bytes + 2 * tarfile.BLOCKSIZE
    return -(-total // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def member_bytes(entries: str) -> str:
    """SQL: per pack, what the images of the relation `entries` take in it, each distinct
    (pack, offset) a header block and its bytes padded to whole blocks."""
    block = tarfile.BLOCKSIZE
    return f"""SELECT pack, sum({block} + (size + {block - 1}) // {block} * {block})::BIGINT AS used
        FROM (SELECT DISTINCT pack, "offset", size FROM {entries}) GROUP BY pack"""


def repack(con: duckdb.DuckDBPyConnection, store: Path, below: float, megabytes: float) -> dict:
    """Rewrites the images of `next_entries` whose packs they fill less than `below` of into new
    packs (KEY order), and points their entries there; the old packs stay until no kept index
    names them (store_gc). Returns what it copied."""
    sparse = [
        pack
        for pack, used in con.execute(f"{member_bytes('next_entries')} ORDER BY pack").fetchall()
        if packed_bytes(used) < below * (store / PACKS / pack).stat().st_size
    ]
    copied = {"packs": len(sparse), "images": 0, "bytes": 0}
    if not sparse:
        return copied
    con.execute("CREATE OR REPLACE TEMP TABLE sparse (pack VARCHAR)")
    con.executemany("INSERT INTO sparse VALUES (?)", [(pack,) for pack in sparse])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE sparse_entries AS SELECT {KEYS}, pack, "offset", size
        FROM next_entries WHERE pack IN (SELECT pack FROM sparse) ORDER BY {KEYS}"""
    )
    rows = con.execute("SELECT * FROM sparse_entries").fetchall()
    placed = pack_images(
        store,
        [(member(*key), (str(store / PACKS / pack), o, size)) for *key, pack, o, size in rows],
        megabytes,
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE moved AS
        SELECT {KEYS}, pack, "offset" FROM sparse_entries WHERE false"""
    )
    con.executemany(
        "INSERT INTO moved VALUES (?, ?, ?, ?, ?, ?)",
        [(*key, *placed[member(*key)][:2]) for *key, _, _, _ in rows],
    )
    con.execute(
        f"""UPDATE next_entries AS e SET pack = m.pack, "offset" = m."offset" FROM moved AS m
        WHERE ({", ".join(f"e.{k}" for k in KEY)}) = ({", ".join(f"m.{k}" for k in KEY)})"""
    )
    copied.update(images=len(rows), bytes=sum(size for *_, size in rows))
    return copied


def open_previous(con: duckdb.DuckDBPyConnection, previous: Path | None) -> None:
    """The view `previous_entries`: the index `previous`, or none when there is no earlier one."""
    entries = f"read_parquet({quote(previous)})" if previous else no_rows(INDEX_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP VIEW previous_entries AS SELECT * FROM {entries}")


def lookup(
    con: duckdb.DuckDBPyConnection,
    wanted: str,
    previous: Path | None,
    store: Path,
    placeholders: frozenset[str] = frozenset(),
) -> None:
    """Creates the table `looked_up`: each row of the relation `wanted` (its KEY columns) with the
    previous index's entry for its key where it can be reused (its pack is there and its bytes are
    no placeholder; otherwise NULLs) and its origin (ORIGINS)."""
    open_previous(con, previous)
    packs = [row[0] for row in con.execute("SELECT DISTINCT pack FROM previous_entries").fetchall()]
    con.execute("CREATE OR REPLACE TEMP TABLE present_packs (pack VARCHAR)")
    present = [pack for pack in packs if (store / PACKS / pack).is_file()]
    if present:
        con.executemany("INSERT INTO present_packs VALUES (?)", [(pack,) for pack in present])
    con.execute("CREATE OR REPLACE TEMP TABLE denied (sha256 VARCHAR)")
    if placeholders:
        con.executemany("INSERT INTO denied VALUES (?)", [(sha,) for sha in sorted(placeholders)])
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE looked_up AS
        WITH usable AS (
            SELECT * FROM previous_entries
            WHERE pack IN (SELECT pack FROM present_packs)
              AND sha256 NOT IN (SELECT sha256 FROM denied)
        )
        SELECT w.photo_id, w.rendition, w.width, w.height, {columns(ENTRY, "u.")}, u.stored,
               CASE WHEN u.pack IS NOT NULL THEN 'reused'
                    WHEN w.photo_id IN (SELECT photo_id FROM previous_entries)
                    THEN 'redownloaded'
                    ELSE 'downloaded' END AS origin
        FROM (SELECT {KEYS} FROM {wanted}) AS w LEFT JOIN usable AS u USING ({KEYS})
        ORDER BY {KEYS}"""
    )


def write_index(
    con: duckdb.DuckDBPyConnection,
    manifests: list[Path],
    previous: Path | None,
    as_of: date,
    keep: int,
    store: Path,
    out: Path,
    repack_below: float = 0.0,
    pack_megabytes: float = 1024,
) -> dict:
    """The index after snapshot `as_of` into `out`: the images its chunks' manifests list (KEY,
    ENTRY and origin; one entry per key), and the previous index's others that one of the last
    `keep` snapshots used; the images of packs they fill less than `repack_below` of copied into
    new packs of about `pack_megabytes` (repack). Returns what changed; a StageError if an entry
    names a missing pack."""
    open_previous(con, previous)
    names = ", ".join(quote(path) for path in manifests)
    listed = f"read_parquet([{names}])" if manifests else no_rows(MANIFEST_COLUMNS)
    month = quote(as_of.isoformat())
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE used_now AS
        SELECT {KEYS}, {columns(ENTRY)}, origin FROM (
            SELECT *, row_number() OVER (PARTITION BY {KEYS} ORDER BY pack, "offset") AS copy
            FROM {listed}
        ) WHERE copy = 1"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE next_entries AS
        SELECT n.photo_id, n.rendition, n.width, n.height, {columns(ENTRY, "n.")},
               coalesce(p.stored, {month}::DATE) AS stored, {month}::DATE AS used
        FROM used_now AS n LEFT JOIN previous_entries AS p
          ON (n.photo_id, n.rendition, n.width, n.height, n.sha256)
           = (p.photo_id, p.rendition, p.width, p.height, p.sha256)
        UNION ALL
        SELECT * FROM previous_entries
        WHERE ({KEYS}) NOT IN (SELECT ({KEYS}) FROM used_now)
          AND used IN (
            SELECT used FROM (SELECT used FROM previous_entries UNION SELECT {month}::DATE)
            ORDER BY used DESC LIMIT {int(keep)}
          )"""
    )
    missing = [
        pack
        for (pack,) in con.execute("SELECT DISTINCT pack FROM next_entries ORDER BY 1").fetchall()
        if not (store / PACKS / pack).is_file()
    ]
    if missing:
        raise StageError(
            f"{store / PACKS}: {len(missing)} pack(s) named by the index are missing (first: "
            f"{missing[0]}); restore them, or remove the index {previous} to download again"
        )
    repacked = repack(con, store, repack_below, pack_megabytes)
    write_parquet(con, f"SELECT {columns(INDEX_COLUMNS)} FROM next_entries ORDER BY {KEYS}", out)
    return report(con, store) | {"repacked": repacked}


def report(con: duckdb.DuckDBPyConnection, store: Path) -> dict:
    """Entries and bytes before and after, this month's images by origin, the previous snapshot's
    images this one does not use, and the entries that expired."""

    def size(table: str) -> dict:
        entries, image_bytes = con.execute(
            f"SELECT count(*), coalesce(sum(size), 0) FROM {table}"
        ).fetchone()
        packs = [row[0] for row in con.execute(f"SELECT DISTINCT pack FROM {table}").fetchall()]
        return {
            "entries": entries,
            "image_bytes": int(image_bytes),
            "packs": len(packs),
            "pack_bytes": sum(
                (store / PACKS / pack).stat().st_size
                for pack in packs
                if (store / PACKS / pack).is_file()
            ),
        }

    origins = dict(con.execute("SELECT origin, count(*) FROM used_now GROUP BY 1").fetchall())
    unused, expired = con.execute(
        f"""SELECT count(*) FILTER (WHERE used = (SELECT max(used) FROM previous_entries)
                                   AND ({KEYS}) NOT IN (SELECT ({KEYS}) FROM used_now)),
                   count(*) FILTER (WHERE ({KEYS}) NOT IN (SELECT ({KEYS}) FROM next_entries))
            FROM previous_entries"""
    ).fetchone()
    return {
        "before": size("previous_entries"),
        "after": size("next_entries"),
        "month": {origin: origins.get(origin, 0) for origin in ORIGINS},
        "unused": unused,  # images the previous snapshot used and this one does not
        "expired": expired,  # entries the index no longer holds (store_snapshots)
    }
