"""A download chunk's images checked and kept. After each img2dataset pass, every body it fetched is
judged by images/good_bytes.py, the good ones are packed into the image store in photo_id order,
and pass-N.checked.parquet (CHECKED_COLUMNS) records each body's verdict and where a good one is in
the store; the pass's tars are then deleted. When the chunk is done, its manifest
(images.parquet, store.MANIFEST_COLUMNS) lists every image of the chunk, reused or new, with its
key, sha256, hashes and place in the store: what the download report, the overlap check and the
shards read.

A killed job leaves a pass either checked (its file written, its packs whole) or not (its tars
still there): a rerun checks it again and writes the same packs under the same names."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from workflow_scripts.common import contracts
from workflow_scripts.common.duck import quote, write_parquet
from workflow_scripts.common.pools import mapped
from workflow_scripts.common.tars import members, read_images
from workflow_scripts.images import good_bytes, store

CHECKED = ".checked.parquet"  # pass-N's, beside its folder
REUSED = "reused.parquet"  # the store's verdict on each of the chunk's images, made once
CHECKED_COLUMNS = (
    ("pass", "INTEGER"),
    ("key", "VARCHAR"),  # img2dataset's key in the pass's tars
    ("good", "BOOLEAN"),
    ("reason", "VARCHAR"),  # why not good
    ("retryable", "BOOLEAN"),
    ("sha256", "VARCHAR"),
    ("hash", "BLOB"),
    ("mirrored", "BLOB"),
    ("quality", "SMALLINT"),
    ("pack", "VARCHAR"),  # a good image's place in the store
    ("offset", "BIGINT"),
    ("size", "BIGINT"),
)
JUDGED = (  # check_tar's rows: the verdict, and where the body is in img2dataset's tar
    ("key", "VARCHAR"),
    *CHECKED_COLUMNS[2:9],
    ("tar", "VARCHAR"),
    ("offset", "BIGINT"),
    ("size", "BIGINT"),
)
PLACED = (("key", "VARCHAR"), ("pack", "VARCHAR"), ("offset", "BIGINT"), ("size", "BIGINT"))
NOT_IMAGES = ("json", "txt", "parquet")  # the other members of img2dataset's tars
ARROW = {
    "INTEGER": pa.int32(),
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "BOOLEAN": pa.bool_(),
    "BLOB": pa.binary(),
    "SMALLINT": pa.int16(),
}


def table(rows: list[tuple], pairs: tuple[tuple[str, str], ...]) -> pa.Table:
    """Rows as an Arrow table with these (name, DuckDB type) columns."""
    columns = list(zip(*rows)) if rows else [()] * len(pairs)
    return pa.table(
        {name: pa.array(list(column), ARROW[kind]) for (name, kind), column in zip(pairs, columns)}
    )


def check_tar(tar: Path, max_pixels: int, placeholders: frozenset[str]) -> list[tuple]:
    """(key, good, reason, retryable, sha256, hash, mirrored, quality, tar, offset, size) of every
    image in one of img2dataset's tars."""
    found = {
        name.partition(".")[0]: place
        for name, place in members(tar).items()
        if name.partition(".")[2] not in NOT_IMAGES
    }
    read = read_images([(str(tar), offset, size) for offset, size in found.values()])
    rows = []
    for (key, (offset, size)), (_, data) in zip(found.items(), read):
        verdict = good_bytes.check(data, max_pixels, placeholders)
        if isinstance(verdict, good_bytes.Good):
            judged = (True, None, False, verdict.sha256, verdict.hash, verdict.mirrored)
            rows.append((key, *judged, verdict.quality, str(tar), offset, size))
        else:
            rows.append((key, False, verdict.reason, verdict.retryable, *[None] * 4, None, 0, 0))
    return rows


def keep_pass(partial: Path, number: int, image_store: Path, settings: dict) -> None:
    """Check pass `number`'s images and pack the good ones into the store, once; then delete its
    tars."""
    folder = partial / f"pass-{number}"
    out = folder.with_name(folder.name + CHECKED)
    tars = sorted(folder.glob("*.tar"))
    if not out.exists():
        judged = mapped(
            check_tar,
            tars,
            settings["processes"],
            [settings["max_pixels"]] * len(tars),
            [frozenset(settings["placeholder_sha256"])] * len(tars),
            desc="checking",
        )
        con = duckdb.connect()
        con.register("judged", table([row for rows in judged for row in rows], JUDGED))
        statuses = quote(str(folder / "*.parquet"))
        good = con.execute(
            f"""SELECT s.photo_id, u.rendition, u.width, u.height, j.key, j.tar, j."offset",
                       j.size
                FROM judged AS j JOIN read_parquet({statuses}) AS s USING (key)
                JOIN read_parquet({quote(partial / contracts.CHUNK_URLS)}) AS u USING (photo_id)
                WHERE j.good ORDER BY s.photo_id"""
        ).fetchall()
        con.register("placed", table(pack(good, image_store, settings), PLACED))
        write_parquet(
            con,
            f"SELECT {number}::INTEGER AS pass, j.key, j.good, j.reason, j.retryable, j.sha256, "
            'j.hash, j.mirrored, j.quality, p.pack, p."offset", p.size '
            "FROM judged AS j LEFT JOIN placed AS p USING (key) ORDER BY j.key",
            out,
        )
    for tar in tars:  # their good images are in the store now
        tar.unlink()


def pack(good: list[tuple], image_store: Path, settings: dict) -> list[tuple]:
    """Packs of about images.pack_megabytes of the `good` images (photo_id, rendition, width,
    height, key, tar, offset, size; in photo_id order), each member named by the image's store
    key; returns (key, pack, offset, size) of each."""
    names = [store.member(*row[:4]) for row in good]
    placed = store.pack_images(
        image_store,
        [(name, row[-3:]) for name, row in zip(names, good)],
        settings["pack_megabytes"],
    )
    return [(row[4], *placed[name]) for name, row in zip(names, good)]


def write_manifest(con: duckdb.DuckDBPyConnection, partial: Path) -> None:
    """The chunk's images.parquet: its reused images and the good ones its passes packed (from
    download_chunk.outcomes' `attempts` and `checked` views over `partial`)."""
    reused = quote(partial / REUSED)
    write_parquet(
        con,
        f"""SELECT {store.columns(store.MANIFEST_COLUMNS)} FROM read_parquet({reused})
            WHERE origin = 'reused'
            UNION ALL
            SELECT r.photo_id, r.rendition, r.width, r.height, c.sha256, c.pack, c."offset",
                   c.size, c.hash, c.mirrored, c.quality, r.origin
            FROM attempts AS a JOIN checked AS c USING (chunk, pass, key)
            JOIN read_parquet({reused}) AS r USING (photo_id)
            WHERE a.status = 'success' ORDER BY photo_id""",
        partial / contracts.CHUNK_IMAGES,
    )
