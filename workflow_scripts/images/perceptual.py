"""Perceptual hashes for the near-duplicate overlap check: PDQ (Meta's 256-bit hash made for
matching a photo across re-encoding, resizing and small edits; BioCLIP 2's pipeline uses it for the
same check) through the pdqhash package, of each image and of its mirror image (a mirrored copy's
PDQ hash is ~128 bits away), with PDQ's quality score (0-100: low for flat images, whose hashes
match too easily).

A subset's images are hashed where they arrive, in the download jobs' one decode of each image
(images/good_bytes.py, which keeps only images that decode); an external benchmark's by its own
rule (images/hash_external_benchmark.py).

Rows: photo_id (an external benchmark's: its metadata key), hash and mirrored (32 bytes each) and
quality; an external image that PIL cannot decode has a NULL hash and is counted by the
near-duplicate check.
"""

from __future__ import annotations

import io

import numpy as np
import pdqhash
import pyarrow as pa
from PIL import Image

HASH = pa.binary(32)
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
    return pdq_pixels(pixels)


def pdq_pixels(pixels: np.ndarray) -> tuple[bytes, bytes, int]:
    """The PDQ hash of decoded RGB pixels and of their mirror image, and the quality."""
    bits, quality = pdqhash.compute(pixels)
    mirrored, _ = pdqhash.compute(np.ascontiguousarray(pixels[:, ::-1]))
    return (
        np.packbits(bits.astype(np.uint8)).tobytes(),
        np.packbits(mirrored.astype(np.uint8)).tobytes(),
        quality,
    )


if __name__ == "__main__":  # this module's command moved (CHANGELOG.md); the old name still runs it
    from workflow_scripts.common.renamed import run_as

    run_as(__spec__.name, "workflow_scripts.images.hash_external_benchmark")
