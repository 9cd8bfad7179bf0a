"""Perceptual hashes for the near-duplicate overlap check: PDQ (Meta's 256-bit hash made for
matching a photo across re-encoding, resizing and small edits; BioCLIP 2's pipeline uses it for the
same check) through the pdqhash package, of each image and of its mirror image (a mirrored copy's
PDQ hash is ~128 bits away), with PDQ's quality score (0-100: low for flat images, whose hashes
match too easily).

A subset's images are hashed in its download jobs, where they arrive: img2dataset decodes them in
its own workers with no hook for more, so this is the one pass of ours that decodes each image,
run on the tars img2dataset has just written (hashes.parquet in the chunk folder, put together into
the subset's by the download report); an external benchmark's (config evaluate.external) by its
own rule (images/hash_external_benchmark.py).

Rows: photo_id (an external benchmark's: its metadata key), hash and mirrored (32 bytes each) and
quality; an image that PIL cannot decode has a NULL hash and is counted by the near-duplicate check.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import duckdb
import numpy as np
import pdqhash
import pyarrow as pa
from PIL import Image

from workflow_scripts.common.duck import write_parquet
from workflow_scripts.common.pools import mapped

HASH = pa.binary(32)
NOT_IMAGES = ("json", "txt", "parquet")  # the other members of img2dataset's tars
COLUMNS = ("hash", "mirrored", "quality")


def hashes_table(**columns) -> pa.Table:
    """Named id columns, then the hashes' columns from lists of pdq()'s values."""
    *ids, hashes, mirrored, quality = columns.values()
    return pa.table(
        {
            **dict(zip(columns, ids)),
            "hash": pa.array(hashes, HASH),
            "mirrored": pa.array(mirrored, HASH),
            "quality": pa.array(quality, pa.int16()),
        }
    )


def pdq(data: bytes) -> tuple[bytes, bytes, int] | tuple[None, None, None]:
    """The PDQ hash of an image and of its mirror image, and the quality; Nones when PIL cannot
    decode the bytes."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, None, None
    bits, quality = pdqhash.compute(pixels)
    mirrored, _ = pdqhash.compute(np.ascontiguousarray(pixels[:, ::-1]))
    return (
        np.packbits(bits.astype(np.uint8)).tobytes(),
        np.packbits(mirrored.astype(np.uint8)).tobytes(),
        quality,
    )


def hash_tar(tar: Path) -> list[tuple]:
    """(the tar's folder, img2dataset's key, hash, mirrored, quality) of each image in one tar."""
    rows = []
    with tarfile.open(tar) as archive:
        for member in archive:
            key, _, extension = member.name.partition(".")
            if member.isfile() and extension not in NOT_IMAGES:
                rows.append((str(tar.parent), key, *pdq(archive.extractfile(member).read())))
    return rows


def write_chunk_hashes(
    con: duckdb.DuckDBPyConnection, chunk: Path, out: Path, processes: int = 1
) -> None:
    """The hashes of a chunk's downloaded images (the `successes` view of its folder `chunk`) into
    the Parquet `out`, in photo_id order, hashed by `processes` worker processes."""
    tars = sorted(chunk.glob("pass-*/*.tar"))
    rows = [
        row for tar_rows in mapped(hash_tar, tars, processes, desc="hashing") for row in tar_rows
    ]
    folder, key, *hashes = zip(*rows) if rows else ((),) * 5
    con.register(
        "hashed",
        hashes_table(
            folder=pa.array(folder, pa.string()),
            key=pa.array(key, pa.string()),
            **dict(zip(COLUMNS, hashes)),
        ),
    )
    write_parquet(
        con,
        "SELECT s.photo_id, h.hash, h.mirrored, h.quality FROM successes AS s "
        "JOIN hashed AS h USING (folder, key) ORDER BY s.photo_id",
        out,
    )


if __name__ == "__main__":  # this module's command moved (CHANGELOG.md); the old name still runs it
    from workflow_scripts.common.renamed import run_as

    run_as(__spec__.name, "workflow_scripts.images.hash_external_benchmark")
