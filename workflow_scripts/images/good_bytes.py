"""Which downloaded bytes are an image worth keeping: the one decode of ours each image gets, with
its PDQ hashes (images/perceptual.py) and sha256 from the same pass. An image kept once is reused
month after month (images/store.py), so a bad one must never get in: a known placeholder, a body
that is not an image (an HTML page served with status 200), a header declaring more pixels than
images.max_pixels (a decompression bomb: refused before decoding), a truncated body, or bytes PIL
cannot decode. Each is a verdict with a reason (stable text: it goes into failures.parquet) and
whether trying the download again may help."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from workflow_scripts.common.tars import ImageFormatError, image_format
from workflow_scripts.images.perceptual import pdq_pixels

PLACEHOLDER = "placeholder image"  # how the reason for a known placeholder starts
UNDECODABLE = "undecodable image"  # and for bytes PIL cannot decode


@dataclass(frozen=True)
class Good:
    sha256: str
    hash: bytes
    mirrored: bytes
    quality: int


@dataclass(frozen=True)
class Bad:
    reason: str
    retryable: bool


def check(data: bytes, max_pixels: int, placeholders: frozenset[str] = frozenset()) -> Good | Bad:
    """The verdict on one downloaded body: Good with its hashes, or Bad with why."""
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 in placeholders:
        return Bad(f"{PLACEHOLDER} (sha256 {sha256}, in images.placeholder_sha256)", False)
    try:
        image_format(data, "")
    except ImageFormatError:
        return Bad(f"not an image (first bytes {data[:12]!r})", True)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                return Bad(
                    f"decompression bomb: {width} x {height} pixels over images.max_pixels "
                    f"({max_pixels})",
                    False,
                )
            image.load()
            pixels = np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as error:  # PIL's own limit, past twice its default
        return Bad(f"decompression bomb: {error}", False)
    except Image.UnidentifiedImageError:  # its message names a memory address: not stable
        return Bad(f"{UNDECODABLE}: no format PIL reads", False)
    except OSError as error:
        if "truncated" in str(error):
            return Bad(f"truncated image: {error}", True)
        return Bad(f"{UNDECODABLE}: {error}", False)
    except (ValueError, SyntaxError) as error:  # some of PIL's plugins raise these on bad data
        return Bad(f"{UNDECODABLE}: {error}", False)
    return Good(sha256, *pdq_pixels(pixels))
