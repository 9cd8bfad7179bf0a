"""img2dataset's downloads with a time limit per image: its `timeout` bounds each socket operation
(urllib's urlopen), so a server trickling a byte every few seconds is never cut off. Here the body
is read in 64 KB blocks and the image fails once the whole request has taken more than
images.max_seconds_per_image (checked after each block: at most one socket timeout later).

    with installed(seconds):
        img2dataset.download(...)

`installed` swaps the class img2dataset.main.download builds (main.py's `Downloader`, imported from
img2dataset.downloader) for BoundedDownloader. img2dataset pickles that object to its worker
processes (distributor.py, a "spawn" pool): a module-level class pickles by reference, so each
worker imports this module, and BoundedDownloader.download_shard swaps img2dataset.downloader's
`download_image` (what download_image_with_retry calls) for bounded_download_image there, for the
shard's duration.

Imports img2dataset (slow): import this module only where the downloads run
(download_chunk.fetch_pass, after setting NO_ALBUMENTATIONS_UPDATE).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib
import io
import time
import urllib.request
from collections.abc import Iterator

import img2dataset.downloader

# the module: img2dataset/__init__.py's `from img2dataset.main import main` hides it as an attribute
I2D_MAIN = importlib.import_module("img2dataset.main")
BLOCK = 64 * 1024
# img2dataset's own user agent (downloader.download_image), so that servers see the same client
USER_AGENT = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0"


def too_long(seconds: float) -> str:
    """The failure of an image that took longer than `seconds` (download_chunk.RETRYABLE: "timed
    out")."""
    return f"timed out: the whole image took over images.max_seconds_per_image ({seconds:g} s)"


def bounded_download_image(
    row, timeout, user_agent_token, disallowed_header_directives, *, seconds: float
):
    """img2dataset.downloader.download_image (row: (key, url); returns (key, a BytesIO of the body
    or None, the error message or None)), the body read in blocks and given up after `seconds`
    since the request began. A body short of its Content-Length fails as r.read() makes it fail
    (http.client.IncompleteRead)."""
    key, url = row
    started = time.monotonic()
    user_agent = USER_AGENT
    if user_agent_token:
        user_agent += f" (compatible; {user_agent_token}; +https://github.com/rom1504/img2dataset)"
    try:
        request = urllib.request.Request(url, data=None, headers={"User-Agent": user_agent})
        with urllib.request.urlopen(request, timeout=timeout) as r:
            if disallowed_header_directives and img2dataset.downloader.is_disallowed(
                r.headers, user_agent_token, disallowed_header_directives
            ):
                return key, None, "Use of image disallowed by X-Robots-Tag directive"
            body = bytearray()
            while True:
                if time.monotonic() - started > seconds:
                    return key, None, too_long(seconds)
                block = r.read1(BLOCK)  # at most one socket read: bounded by `timeout`
                if not block:
                    break
                body += block
            if getattr(r, "length", None):  # the connection closed before the declared length
                raise http.client.IncompleteRead(bytes(body), r.length)
        return key, io.BytesIO(bytes(body)), None
    except Exception as err:  # img2dataset's contract: the error as text
        return key, None, str(err)


class BoundedDownloader(img2dataset.downloader.Downloader):
    """img2dataset's Downloader whose shards are fetched by bounded_download_image (at most
    `seconds` an image)."""

    def __init__(self, *args, seconds: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seconds = seconds

    def download_shard(self, row):
        original = img2dataset.downloader.download_image
        img2dataset.downloader.download_image = functools.partial(
            bounded_download_image, seconds=self.seconds
        )
        try:
            return super().download_shard(row)
        finally:
            img2dataset.downloader.download_image = original


@contextlib.contextmanager
def installed(seconds: float) -> Iterator[None]:
    """img2dataset.download, while this lasts, fetches each image in at most `seconds`."""
    original = I2D_MAIN.Downloader
    I2D_MAIN.Downloader = functools.partial(BoundedDownloader, seconds=seconds)
    try:
        yield
    finally:
        I2D_MAIN.Downloader = original
