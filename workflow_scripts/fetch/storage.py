"""Where snapshots come from: an S3 bucket (boto3), a local mirror folder, or an HTTP(S) URL.

Each source answers three questions the resumable downloader needs: what objects exist under a
prefix, how big an object is (and its ETag), and the object's bytes from an offset on.
"""

from __future__ import annotations

import email.utils
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import boto3
import botocore.config
import botocore.exceptions
import requests
import urllib3.exceptions
from botocore import UNSIGNED

CHUNK = 1024 * 1024  # also the most a killed transfer can lose
# what a source's client raises when the source cannot answer (the commands name it and stop)
PROBLEMS = (
    OSError,
    NotImplementedError,
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    requests.RequestException,
)


class TransientError(Exception):
    """A failure worth retrying: 5xx, 429, timeout, dropped connection. `retry_after`: the seconds
    the server asked us to wait (its Retry-After header), if it said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ChangedError(Exception):
    """The partial download cannot be continued (the object changed, or its bytes failed a
    checksum): restart it from zero."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str | None  # S3: the quoted-off ETag; MD5 of the content unless it contains '-'


class Source(Protocol):
    description: str
    md5_etags: bool  # whether a plain (non-multipart) ETag is the MD5 of the content

    def list(self, prefix: str) -> list[str]: ...
    def head(self, key: str) -> ObjectInfo: ...
    def read(self, key: str, start: int, etag: str | None) -> Iterator[bytes]: ...


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds: a number of seconds or an HTTP date (one already past: 0).
    Only a finite, non-negative wait counts: anything else (garbage, a negative number, inf, nan, a
    date that cannot be read) is None, as if the server had not said, and the usual backoff
    applies."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError, OverflowError, OSError):
            return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _skip(chunks: Iterator[bytes], start: int) -> Iterator[bytes]:
    """The chunks without their first `start` bytes: a server that ignores Range answers 200 with
    the whole object, and we already have the bytes before `start`."""
    for chunk in chunks:
        if start < len(chunk):
            yield chunk[start:]
        start = max(start - len(chunk), 0)


class S3Source:
    md5_etags = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        anonymous: bool = True,
        region: str = "us-east-1",
        timeout: float = 60,
    ):
        config = botocore.config.Config(
            signature_version=UNSIGNED if anonymous else None,
            region_name=region,
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": 1},  # retries are ours: they resume from the last byte
        )
        self.client = boto3.client("s3", endpoint_url=endpoint_url, config=config)
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.description = f"s3://{bucket}/{self.prefix}".rstrip("/") + (
            f" at {endpoint_url}" if endpoint_url else ""
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, fn, **kwargs):
        try:
            return fn(Bucket=self.bucket, **kwargs)
        except botocore.exceptions.ClientError as exc:
            status = _status(exc)
            if status >= 500 or status == 429:
                wait = (
                    exc.response.get("ResponseMetadata", {})
                    .get("HTTPHeaders", {})
                    .get("retry-after")
                )
                raise TransientError(f"{what}: HTTP {status}", _retry_after(wait)) from exc
            if status == 412:
                raise ChangedError(f"{what}: object changed (ETag mismatch)") from exc
            if status == 403:
                raise PermissionError(
                    f"{self.description}: {what}: access refused (HTTP 403): not public; if the "
                    "bucket needs credentials, set fetch.anonymous: false in config.yaml"
                ) from exc
            if status == 404 or exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(
                    f"{self.description}: {what}: not found (HTTP {status})"
                ) from exc
            raise
        except (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError) as exc:
            raise TransientError(f"{what}: {exc}") from exc

    def list(self, prefix: str) -> list[str]:
        keys, token = [], None
        while True:
            kwargs = {"Prefix": self._key(prefix)}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(f"list {prefix}", self.client.list_objects_v2, **kwargs)
            strip = len(self.prefix) + 1 if self.prefix else 0
            keys += [item["Key"][strip:] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return sorted(keys)
            token = page["NextContinuationToken"]

    def head(self, key: str) -> ObjectInfo:
        meta = self._call(f"head {key}", self.client.head_object, Key=self._key(key))
        return ObjectInfo(key, int(meta["ContentLength"]), meta.get("ETag", "").strip('"') or None)

    def read(self, key: str, start: int, etag: str | None) -> Iterator[bytes]:
        kwargs = {"Key": self._key(key), "Range": f"bytes={start}-"}
        if etag:
            kwargs["IfMatch"] = etag
        response = self._call(f"get {key}", self.client.get_object, **kwargs)
        chunks = response["Body"].iter_chunks(CHUNK)
        if (
            start and response["ResponseMetadata"]["HTTPStatusCode"] != 206
        ):  # Range ignored: the whole object
            chunks = _skip(chunks, start)
        try:
            yield from chunks
        except (
            botocore.exceptions.FlexibleChecksumError
        ) as exc:  # the bytes already written are wrong
            raise ChangedError(f"get {key}: {exc}") from exc
        except (botocore.exceptions.BotoCoreError, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"get {key}: {exc}") from exc


class LocalSource:
    """A folder laid out like the bucket (the generated sample mirror, or a user's copy)."""

    md5_etags = False

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.description = str(root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"fetch.source {self.root}: no such folder (a local copy of the bucket)"
            )

    def list(self, prefix: str) -> list[str]:
        folder = self.root / os.path.dirname(prefix)
        if not folder.is_dir():
            return []
        names = (str(p.relative_to(self.root)) for p in folder.iterdir() if p.is_file())
        return sorted(n for n in names if n.startswith(prefix))

    def head(self, key: str) -> ObjectInfo:
        path = self.root / key
        if not path.is_file():
            raise FileNotFoundError(f"{self.description}: {key}: not found")
        return ObjectInfo(key, path.stat().st_size, None)

    def read(self, key: str, start: int, etag: str | None) -> Iterator[bytes]:
        with open(self.root / key, "rb") as handle:
            handle.seek(start)
            while chunk := handle.read(CHUNK):
                yield chunk


class HTTPSource:
    """One base URL, e.g. https://www.inaturalist.org/taxa/ for the taxonomy archive."""

    md5_etags = False

    def __init__(self, base_url: str, timeout: float = 60):
        self.base = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.description = self.base
        self.session = requests.Session()
        # the raw bytes as stored: never let the server or requests apply Content-Encoding
        self.session.headers["Accept-Encoding"] = "identity"

    def _request(self, method: str, key: str, **kwargs) -> requests.Response:
        try:
            response = self.session.request(method, self.base + key, timeout=self.timeout, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"{method} {key}: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(
                f"{method} {key}: HTTP {response.status_code}",
                _retry_after(response.headers.get("Retry-After")),
            )
        if response.status_code == 412:
            raise ChangedError(f"{method} {key}: object changed (ETag mismatch)")
        if response.status_code == 403:
            raise PermissionError(
                f"{self.base}{key}: access refused (HTTP 403) by the server; download it by "
                "hand into the source, or point config.yaml's fetch at another copy"
            )
        if response.status_code == 404:
            raise FileNotFoundError(f"{self.base}{key}: not found (HTTP 404)")
        response.raise_for_status()
        return response

    def list(self, prefix: str) -> list[str]:
        raise NotImplementedError(f"{self.base} is a plain HTTP location and cannot be listed")

    def head(self, key: str) -> ObjectInfo:
        response = self._request("HEAD", key, allow_redirects=True)
        if "Content-Length" not in response.headers:
            raise FileNotFoundError(
                f"{self.base}{key}: the server does not say how big it is (no Content-Length), "
                "so the download cannot be verified; download it by hand into the source"
            )
        etag = response.headers.get("ETag", "")
        strong = etag.startswith('"') and etag.endswith('"') and len(etag) > 1
        return ObjectInfo(
            key, int(response.headers["Content-Length"]), (etag[1:-1] if strong else etag) or None
        )

    def read(self, key: str, start: int, etag: str | None) -> Iterator[bytes]:
        headers = {"Range": f"bytes={start}-"}
        if etag and not etag.startswith("W/"):  # If-Match compares strong ETags only
            headers["If-Match"] = f'"{etag}"'
        response = self._request("GET", key, headers=headers, stream=True)
        chunks = response.raw.stream(CHUNK, decode_content=False)
        if start and response.status_code != 206:  # Range ignored: the whole object
            chunks = _skip(chunks, start)
        try:
            yield from chunks
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"GET {key}: {exc}") from exc


def open_source(location: str, settings: dict) -> Source:
    """s3://bucket[/prefix], http(s)://host/path/, or a local folder; `settings`: config.yaml's
    fetch section (endpoint_url, anonymous, region, timeout_seconds)."""
    parsed = urlparse(location)
    if parsed.scheme == "s3":
        return S3Source(
            parsed.netloc,
            parsed.path,
            settings["endpoint_url"],
            settings["anonymous"],
            settings["region"],
            settings["timeout_seconds"],
        )
    if parsed.scheme in ("http", "https"):
        return HTTPSource(location, settings["timeout_seconds"])
    return LocalSource(location)


def split_location(location: str, default: Source, settings: dict) -> tuple[Source, str]:
    """A key inside the default source, or a full URL split into (its source, its key)."""
    if "://" not in location:
        return default, location
    base, _, key = location.rpartition("/")
    return open_source(base, settings), key
