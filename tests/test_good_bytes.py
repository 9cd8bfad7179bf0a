"""Only good bytes are kept: each kind of bad body a server can send gets its verdict, and a good
image gets the hashes the near-duplicate check computes."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import pytest
import yaml
from PIL import Image

from tests.conftest import REPO
from workflow_scripts.images.good_bytes import Bad, Good, check
from workflow_scripts.images.perceptual import pdq
from workflow_scripts.sample.images import PLACEHOLDER

MAX_PIXELS = 50_000_000


def image(kind: str, size=(64, 48)) -> bytes:
    out = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(out, kind)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that is only a header declaring width x height pixels (a decompression bomb's)."""
    ihdr = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + ihdr + struct.pack(">I", zlib.crc32(ihdr))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + end


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "GIF"])
def test_jpeg_png_gif_pass_with_the_hashes_pdq_gives(kind):
    data = image(kind)
    verdict = check(data, MAX_PIXELS)
    assert verdict == Good(hashlib.sha256(data).hexdigest(), *pdq(data))


def test_a_truncated_jpeg_is_retryable():
    data = image("JPEG", (640, 480))
    verdict = check(data[: len(data) // 2], MAX_PIXELS)
    assert isinstance(verdict, Bad) and verdict.retryable
    assert verdict.reason.startswith("truncated image: ")


def test_an_html_page_is_not_an_image_and_retryable():
    verdict = check(b"<!DOCTYPE html><html><body>Too many requests</body></html>", MAX_PIXELS)
    assert verdict == Bad("not an image (first bytes b'<!DOCTYPE ht')", True)


def test_bytes_behind_an_image_signature_are_undecodable_and_final():
    verdict = check(b"\xff\xd8\xff" + bytes(200), MAX_PIXELS)
    assert isinstance(verdict, Bad) and not verdict.retryable
    assert verdict.reason.startswith("undecodable image: ")


@pytest.mark.parametrize(
    "width, height, reason",
    [
        (8000, 8000, "decompression bomb: 8000 x 8000 pixels over images.max_pixels (50000000)"),
        # past twice PIL's own limit, PIL refuses it as it opens
        (40000, 40000, "decompression bomb: Image size (1600000000 pixels) exceeds limit"),
    ],
)
def test_a_bomb_header_is_final_without_decoding(width, height, reason):
    verdict = check(png_header(width, height), MAX_PIXELS)  # decoding it would say "truncated"
    assert isinstance(verdict, Bad) and not verdict.retryable
    assert verdict.reason.startswith(reason)


def test_a_placeholder_sha256_is_final():
    data = image("PNG")
    sha256 = hashlib.sha256(data).hexdigest()
    assert check(data, MAX_PIXELS, frozenset({sha256})) == Bad(
        f"placeholder image (sha256 {sha256}, in images.placeholder_sha256)", False
    )
    assert isinstance(check(data, MAX_PIXELS, frozenset({"0" * 64})), Good)


def test_config_denies_the_sample_placeholder():
    """config.yaml names the sha256 of the sample's placeholder image, so that the sample's flagged
    photo ends as a counted failure."""
    denied = yaml.safe_load((REPO / "config.yaml").read_text())["images"]["placeholder_sha256"]
    assert denied == [hashlib.sha256(PLACEHOLDER).hexdigest()]
    assert check(PLACEHOLDER, MAX_PIXELS, frozenset(denied)).reason.startswith("placeholder image")
