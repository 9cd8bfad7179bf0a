"""Fetch against a real local S3 server (moto), through a proxy that injects faults."""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import http.client
import io
import json
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import boto3
import pytest

from tests.conftest import FaultyProxy, upload_mirror
from tests.sample_tables import bundle_tables
from workflow_scripts.common.config import settings
from workflow_scripts.fetch import snapshot as fetch_mod
from workflow_scripts.fetch.snapshot import FetchError, available_dates, download, fetch, resolve
from workflow_scripts.fetch.storage import (
    HTTPSource,
    LocalSource,
    S3Source,
    _retry_after,
    open_source,
)

TABLES = ("observations", "observers", "photos", "taxa")


def s3(endpoint: str, bucket: str) -> S3Source:
    return S3Source(bucket, endpoint_url=endpoint, timeout=10)


def raw_tables(raw: Path) -> dict[str, bytes]:
    return {t: gzip.decompress((raw / f"{t}.csv.gz").read_bytes()) for t in TABLES}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_by_date_from_s3(s3_server, bucket, mirror, tmp_path):
    raw = fetch(s3(s3_server, bucket), "2024-08-27", tmp_path / "{date}" / "raw")
    assert raw == tmp_path / "2024-08-27" / "raw"
    assert raw_tables(raw) == bundle_tables(mirror, "2024-08-27")
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["resolution"]["method"] == "dated-bundle"
    bundle = next(o for o in manifest["objects"] if o["key"].startswith("metadata/"))
    local_bundle = mirror / bundle["key"]
    assert bundle["etag"] == bundle["md5"] == hashlib.md5(local_bundle.read_bytes()).hexdigest()
    assert (
        bundle["sha256"] == sha256(local_bundle) and bundle["size"] == local_bundle.stat().st_size
    )
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256(raw / name)
    assert (
        manifest["files"]["photos.csv.gz"]["rows"]
        == bundle_tables(mirror, "2024-08-27")["photos"].count(b"\n") - 1
    )
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [f"{t}.csv.gz" for t in TABLES] + ["inaturalist-taxonomy.dwca.zip", "manifest.json"]
    )
    assert not (tmp_path / "2024-08-27" / ".partial").exists()


def test_fetch_latest_uses_root_files_and_records_the_date(s3_server, bucket, mirror, tmp_path):
    raw = fetch(s3(s3_server, bucket), "latest", tmp_path / "{date}" / "raw")
    assert raw == tmp_path / "2024-09-27" / "raw"
    for table in TABLES:  # root files are kept byte for byte
        assert (raw / f"{table}.csv.gz").read_bytes() == (mirror / f"{table}.csv.gz").read_bytes()
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["requested"] == "latest" and manifest["snapshot"] == "2024-09-27"
    assert manifest["resolution"]["method"] == "latest-alias"
    assert "inaturalist-open-data-20240927.tar.gz" in manifest["resolution"]["detail"]
    # the newer month's root tables are exactly its bundle's tables
    assert raw_tables(raw) == bundle_tables(mirror, "2024-09-27")


def test_latest_without_alias_takes_newest_bundle(tmp_path, mirror):
    source = tmp_path / "src"
    (source / "metadata").mkdir(parents=True)
    for day in ("20240827", "20240927"):
        name = f"inaturalist-open-data-{day}.tar.gz"
        (source / "metadata" / name).write_bytes((mirror / "metadata" / name).read_bytes())
    resolution = resolve(LocalSource(source), "latest")
    assert (resolution.date, resolution.method) == ("2024-09-27", "newest-dated-bundle")


def test_missing_date_lists_available_dates(s3_server, bucket, tmp_path):
    with pytest.raises(FetchError) as error:
        fetch(s3(s3_server, bucket), "2024-07-27", tmp_path / "{date}" / "raw")
    assert "2024-07-27" in str(error.value)
    assert "2024-08-27, 2024-09-27" in str(error.value)
    assert not (tmp_path / "2024-07-27").exists()


def test_retries_after_two_server_errors(s3_server, bucket, proxy, mirror, tmp_path, monkeypatch):
    delays = []
    monkeypatch.setattr(fetch_mod.time, "sleep", delays.append)
    proxy.faults["inaturalist-open-data-20240827"] = {"fail": 2}
    raw = fetch(
        s3(proxy.url, bucket),
        "2024-08-27",
        tmp_path / "{date}" / "raw",
        {"retries": 3, "backoff_seconds": 0.5},
    )
    assert raw_tables(raw) == bundle_tables(mirror, "2024-08-27")
    statuses = [
        status for method, path, _, status in proxy.log if method == "GET" and "20240827" in path
    ]
    assert statuses == [500, 500, 206]
    assert delays == [0.5, 1.0]  # exponential backoff


def test_listing_and_head_are_retried_too(s3_server, bucket, proxy, mirror, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_mod.time, "sleep", lambda s: None)
    proxy.faults[f"/{bucket}?list-type"] = {"fail": 1}
    proxy.faults["inaturalist-taxonomy"] = {"fail": 1, "methods": ("HEAD",)}
    raw = fetch(s3(proxy.url, bucket), "2024-08-27", tmp_path / "{date}" / "raw", {"retries": 1})
    assert raw_tables(raw) == bundle_tables(mirror, "2024-08-27")
    assert [s for m, p, _, s in proxy.log if "list-type" in p] == [500, 200]
    assert [s for m, p, _, s in proxy.log if m == "HEAD" and "taxonomy" in p] == [500, 200]


def test_gives_up_after_retries_and_writes_nothing(s3_server, bucket, proxy, tmp_path, monkeypatch):
    monkeypatch.setattr(fetch_mod.time, "sleep", lambda s: None)
    proxy.faults["20240827"] = {"fail": 100}
    with pytest.raises(FetchError, match="gave up after 2 retries"):
        fetch(s3(proxy.url, bucket), "2024-08-27", tmp_path / "{date}" / "raw", {"retries": 2})
    assert not (tmp_path / "2024-08-27" / "raw").exists()
    assert not (tmp_path / "2024-08-27" / "raw.tmp").exists()


def test_dropped_connection_resumes_with_a_range_request(
    s3_server, bucket, proxy, mirror, tmp_path, monkeypatch
):
    monkeypatch.setattr(fetch_mod.time, "sleep", lambda s: None)
    proxy.faults["20240827"] = {"cut_after": 1_000_000}
    raw = fetch(s3(proxy.url, bucket), "2024-08-27", tmp_path / "{date}" / "raw")
    ranges = [r for method, path, r, _ in proxy.log if method == "GET" and "20240827" in path]
    assert ranges[0] == "bytes=0-" and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    assert raw_tables(raw) == bundle_tables(mirror, "2024-08-27")


def test_resume_after_killed_transfer(s3_server, bucket, proxy, mirror, tmp_path):
    proxy.faults["20240827"] = {"throttle": 150_000}
    options = json.dumps({"source": f"s3://{bucket}", "endpoint_url": proxy.url})
    command = [
        sys.executable,
        "-m",
        "workflow_scripts.fetch",
        "--settings",
        options,
        "--snapshot",
        "2024-08-27",
        "--out",
        str(tmp_path / "2024-08-27" / "raw"),
    ]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    part = (
        tmp_path
        / "2024-08-27"
        / ".partial"
        / "metadata__inaturalist-open-data-20240827.tar.gz.part"
    )
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 300_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = part.stat().st_size
    assert (
        300_000
        < done
        < (mirror / "metadata" / "inaturalist-open-data-20240827.tar.gz").stat().st_size
    )
    assert not (tmp_path / "2024-08-27" / "raw").exists()

    proxy.faults.clear()
    raw = fetch(s3(proxy.url, bucket), "2024-08-27", tmp_path / "{date}" / "raw")
    last_range = [r for method, path, r, _ in proxy.log if method == "GET" and "20240827" in path][
        -1
    ]
    assert last_range == f"bytes={done}-"
    assert raw_tables(raw) == bundle_tables(mirror, "2024-08-27")
    manifest = json.loads((raw / "manifest.json").read_text())
    bundle = next(o for o in manifest["objects"] if o["key"].startswith("metadata/"))
    assert bundle["md5"] == bundle["etag"]


def test_corrupted_bytes_are_refetched_then_rejected(
    s3_server, bucket, proxy, tmp_path, monkeypatch
):
    monkeypatch.setattr(fetch_mod.time, "sleep", lambda s: None)
    proxy.faults["20240827"] = {"corrupt": True}  # every answer has a flipped byte
    with pytest.raises(FetchError, match="checksum") as error:
        fetch(s3(proxy.url, bucket), "2024-08-27", tmp_path / "{date}" / "raw", {"retries": 2})
    assert "gave up after 2 retries" in str(error.value)
    ranges = [r for method, path, r, _ in proxy.log if method == "GET" and "20240827" in path]
    assert ranges == ["bytes=0-"] * 3  # each retry starts over: the bytes on disk were bad
    assert not (tmp_path / "2024-08-27" / "raw").exists()


def test_truncated_archive_is_a_clear_error_with_no_output(s3_server, mirror, tmp_path):
    key = "metadata/inaturalist-open-data-20240827.tar.gz"
    whole = (mirror / key).read_bytes()
    upload_mirror(s3_server, mirror, "truncated", replace={key: whole[: len(whole) // 2]})
    with pytest.raises(FetchError, match="truncated or corrupt archive") as error:
        fetch(s3(s3_server, "truncated"), "2024-08-27", tmp_path / "{date}" / "raw")
    assert key in str(error.value)
    snapshot = tmp_path / "2024-08-27"
    assert not (snapshot / "raw").exists() and not (snapshot / "raw.tmp").exists()
    assert not any((snapshot / ".partial").glob("*.part"))  # not resumed next time


def test_truncated_gzip_table_in_latest(s3_server, mirror, tmp_path):
    whole = (mirror / "photos.csv.gz").read_bytes()
    upload_mirror(s3_server, mirror, "truncated-gz", replace={"photos.csv.gz": whole[:-100]})
    with pytest.raises(FetchError, match="photos.csv.gz: truncated or corrupt gzip"):
        fetch(s3(s3_server, "truncated-gz"), "latest", tmp_path / "{date}" / "raw")
    assert not (tmp_path / "2024-09-27" / "raw").exists()


def test_taxonomy_from_an_http_url(s3_server, bucket, mirror, tmp_path):
    url = f"{s3_server}/{bucket}/inaturalist-taxonomy.dwca.zip"
    raw = fetch(
        s3(s3_server, bucket),
        "2024-09-27",
        tmp_path / "{date}" / "raw",
        {"taxonomy": url, "timeout_seconds": 10},
    )
    assert sha256(raw / "inaturalist-taxonomy.dwca.zip") == sha256(
        mirror / "inaturalist-taxonomy.dwca.zip"
    )
    manifest = json.loads((raw / "manifest.json").read_text())
    assert manifest["files"]["inaturalist-taxonomy.dwca.zip"]["from"].startswith(s3_server)


def test_local_mirror_gives_the_same_tables_as_s3(s3_server, bucket, mirror, tmp_path):
    local = fetch(open_source(str(mirror), settings("fetch")), "2024-08-27", tmp_path / "local")
    remote = fetch(s3(s3_server, bucket), "2024-08-27", tmp_path / "s3" / "{date}" / "raw")
    for table in TABLES:  # re-compressed deterministically: same bytes whatever the source
        assert sha256(local / f"{table}.csv.gz") == sha256(remote / f"{table}.csv.gz")
    assert available_dates(open_source(str(mirror), settings("fetch"))) == [
        "2024-08-27",
        "2024-09-27",
    ]


def test_refetch_is_byte_identical(mirror, tmp_path):
    first = fetch(open_source(str(mirror), settings("fetch")), "2024-08-27", tmp_path / "a")
    second = fetch(open_source(str(mirror), settings("fetch")), "2024-08-27", tmp_path / "b")
    assert {p.name: sha256(p) for p in first.iterdir()} == {
        p.name: sha256(p) for p in second.iterdir()
    }


def test_expect_date_mismatch_is_an_error(mirror, tmp_path):
    with pytest.raises(FetchError, match="resolves to 2024-09-27, not 2024-08-27"):
        fetch(
            open_source(str(mirror), settings("fetch")),
            "latest",
            tmp_path / "raw",
            expect_date="2024-08-27",
        )


def test_cli_reports_failure_without_traceback(mirror, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow_scripts.fetch",
            "--settings",
            json.dumps({"source": str(mirror)}),
            "--snapshot",
            "2023-01-01",
            "--out",
            str(tmp_path / "raw"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "Available dates: 2024-08-27, 2024-09-27" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("offset", [0.3, 0.5, 0.7])
def test_corrupt_bundle_without_md5_is_caught_by_the_gzip_crc(mirror, tmp_path, offset):
    source = tmp_path / "src"
    (source / "metadata").mkdir(parents=True)
    key = "metadata/inaturalist-open-data-20240827.tar.gz"
    data = bytearray((mirror / key).read_bytes())
    data[int(len(data) * offset)] ^= 0x10  # one flipped bit, and a local source has no ETag
    (source / key).write_bytes(bytes(data))
    (source / "inaturalist-taxonomy.dwca.zip").write_bytes(
        (mirror / "inaturalist-taxonomy.dwca.zip").read_bytes()
    )
    with pytest.raises(FetchError, match=key):
        fetch(LocalSource(source), "2024-08-27", tmp_path / "out" / "{date}" / "raw")
    assert not (tmp_path / "out" / "2024-08-27" / "raw").exists()


def test_object_replaced_mid_transfer_restarts_on_the_new_one(
    s3_server, bucket, proxy, mirror, tmp_path, monkeypatch
):
    monkeypatch.setattr(fetch_mod.time, "sleep", lambda s: None)
    key = "inaturalist-taxonomy.dwca.zip"
    buffer = io.BytesIO((mirror / key).read_bytes())
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("README.txt", "next month's archive")
    replacement = buffer.getvalue()
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    proxy.faults[key] = {
        "cut_after": 5000,
        "then": lambda: client.put_object(
            Bucket=bucket, Key=key, Body=replacement, ACL="public-read"
        ),
    }
    raw = fetch(s3(proxy.url, bucket), "2024-08-27", tmp_path / "{date}" / "raw")
    assert (raw / key).read_bytes() == replacement
    gets = [(r, status) for method, path, r, status in proxy.log if method == "GET" and key in path]
    assert gets[1] == ("bytes=5000-", 412) and gets[-1] == ("bytes=0-", 206)
    manifest = json.loads((raw / "manifest.json").read_text())
    record = next(o for o in manifest["objects"] if o["key"] == key)
    assert record["md5"] == record["etag"] == hashlib.md5(replacement).hexdigest()


def test_multipart_etag_is_recorded_not_compared(s3_server, mirror, tmp_path):
    upload_mirror(s3_server, mirror, "multipart")
    key = "metadata/inaturalist-open-data-20240827.tar.gz"
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    upload = client.create_multipart_upload(Bucket="multipart", Key=key, ACL="public-read")
    part = client.upload_part(
        Bucket="multipart",
        Key=key,
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=(mirror / key).read_bytes(),
    )
    client.complete_multipart_upload(
        Bucket="multipart",
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    raw = fetch(s3(s3_server, "multipart"), "2024-08-27", tmp_path / "{date}" / "raw")
    record = next(
        o for o in json.loads((raw / "manifest.json").read_text())["objects"] if o["key"] == key
    )
    assert record["etag"].endswith("-1") and record["sha256"] == sha256(mirror / key)


# -- planted faults (issue 19) ------------------------------------------------------------------
# a stand-in server that stalls, throttles with Retry-After, ignores Range, refuses
TAXONOMY = "inaturalist-taxonomy.dwca.zip"


class StandIn(FaultyProxy):
    """The conftest proxy plus more faults, each on the first `times` (default 1) matching requests:
    "stall": seconds  send the first `after` bytes of the answer (None: not even the status line),
                      then nothing;
    "status": code    answer that status with `headers` instead of asking the server;
    "ignore_range"    ask the server without the Range header: a 200 with the whole object.
    arrived: (time.monotonic(), method, path) of every request, faulty or not."""

    FAULTS = frozenset({"stall", "status", "ignore_range"})

    def __init__(self, upstream: str):
        super().__init__(upstream)
        self.arrived: list[tuple[float, str, str]] = []
        self.released = threading.Event()  # ends the stalls when the test is over

    def forward(self, handler) -> None:
        self.arrived.append((time.monotonic(), handler.command, handler.path))
        fault = self.fault_for(handler.command, handler.path)
        if not self.FAULTS & fault.keys() or fault.get("times", 1) <= 0:
            super().forward(handler)
            return
        fault["times"] = fault.get("times", 1) - 1
        asked = handler.headers.get("Range")
        if "status" in fault:
            status, headers, body = fault["status"], list(fault.get("headers", {}).items()), b""
        else:
            status, headers, body = self.ask(
                handler, drop=("range",) if fault.get("ignore_range") else ()
            )
        self.log.append((handler.command, handler.path, asked, status))
        if "stall" in fault:
            if fault.get("after") is not None:
                self.answer(handler, status, headers, body[: fault["after"]], length=len(body))
            self.released.wait(fault["stall"])
            handler.close_connection = True
            return
        self.answer(handler, status, headers, body)

    def ask(self, handler, drop=()) -> tuple[int, list, bytes]:
        connection = http.client.HTTPConnection(self.upstream, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in ("host", *drop)}
        connection.request(handler.command, handler.path, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()

    @staticmethod
    def answer(handler, status: int, headers: list, body: bytes, length: int | None = None) -> None:
        handler.send_response(status)
        for name, value in headers:
            if name.lower() not in (
                "transfer-encoding",
                "connection",
                "server",
                "date",
                "content-length",
            ):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
            handler.wfile.flush()

    def close(self) -> None:
        self.released.set()
        super().close()


@pytest.fixture
def stand_in(s3_server):
    server = StandIn(s3_server)
    yield server
    server.close()


@pytest.fixture
def taxonomy_bucket(s3_server, mirror, request) -> str:
    """A bucket of its own holding only the taxonomy archive (a quick upload)."""
    name = "x-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip(
        "-"
    )
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    client.create_bucket(Bucket=name, ACL="public-read")
    client.put_object(
        Bucket=name, Key=TAXONOMY, Body=(mirror / TAXONOMY).read_bytes(), ACL="public-read"
    )
    return name


def through(kind: str, server: StandIn, bucket: str, timeout: float = 10):
    """The taxonomy archive's bucket through the stand-in, as the S3 or the plain HTTP back end sees
    it."""
    if kind == "s3":
        return S3Source(bucket, endpoint_url=server.url, timeout=timeout)
    return HTTPSource(f"{server.url}/{bucket}", timeout=timeout)


def gets(server: StandIn, key: str) -> list[tuple[str | None, int]]:
    return [
        (r, status) for method, path, r, status in server.log if method == "GET" and key in path
    ]


BACK_ENDS = pytest.mark.parametrize("kind", ["s3", "http"])


@BACK_ENDS
@pytest.mark.parametrize("after", [None, 5000], ids=["silent", "mid-body"])
def test_stalled_response_times_out_then_succeeds(
    kind, after, stand_in, taxonomy_bucket, mirror, tmp_path
):
    """A server that accepts and then goes quiet (before answering, or halfway through the body)
    must cost one timeout and a retry, not hang the fetch for as long as the server likes."""
    stand_in.faults[TAXONOMY] = {"stall": 20, "after": after}
    started = time.monotonic()
    item = download(
        through(kind, stand_in, taxonomy_bucket, timeout=1),
        TAXONOMY,
        tmp_path / ".partial",
        1,
        0,
        600,
    )
    assert time.monotonic() - started < 10
    assert item.path.read_bytes() == (mirror / TAXONOMY).read_bytes()
    assert len(gets(stand_in, TAXONOMY)) == 2


@BACK_ENDS
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(kind, status, stand_in, taxonomy_bucket, mirror, tmp_path):
    """A throttled answer says when to come back (Retry-After); retrying sooner, on our own shorter
    backoff, only gets throttled again (and may get the client banned)."""
    stand_in.faults[TAXONOMY] = {"status": status, "headers": {"Retry-After": "1"}}
    item = download(
        through(kind, stand_in, taxonomy_bucket), TAXONOMY, tmp_path / ".partial", 1, 0, 600
    )  # backoff 0
    first, second = [
        t for t, method, path in stand_in.arrived if method == "GET" and TAXONOMY in path
    ]
    assert second - first >= 1
    assert item.path.read_bytes() == (mirror / TAXONOMY).read_bytes()
    assert [s for _, s in gets(stand_in, TAXONOMY)] == [status, 206]


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The waits the fetch asks for (this thread's time.sleep calls), recorded instead of slept: a
    fetch that would wait a day fails its test at once instead of hanging it."""
    waits, real, me = [], time.sleep, threading.get_ident()
    monkeypatch.setattr(
        fetch_mod.time,
        "sleep",
        lambda s: waits.append(s) if threading.get_ident() == me else real(s),
    )
    return waits


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    "header, seconds",
    [
        ("5", 5.0),
        ("0", 0.0),
        ("2.5", 2.5),
        # a date already past: no wait (its id fixed: each xdist worker must collect the same ids)
        pytest.param(http_date(-3600), 0.0, id="an-hour-ago"),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("inf", None),
        ("-inf", None),
        ("nan", None),
        ("1e999", None),
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),
        ("Mon, 99 Foo 2020 00:00:00 GMT", None),
    ],
)
def test_retry_after_header_is_a_finite_non_negative_wait_or_nothing(header, seconds):
    assert _retry_after(header) == seconds


@BACK_ENDS
@pytest.mark.parametrize(
    "header", ["86400", http_date(30 * 365 * 86400)], ids=["a-day", "http-date-decades-on"]
)
def test_too_long_retry_after_stops_at_once(
    kind, header, stand_in, taxonomy_bucket, tmp_path, sleeps
):
    """A server asking to wait longer than fetch.max_retry_after_seconds (600 s by default) stops
    the fetch at once with an error that names the object, the wait asked and what to do, instead of
    sleeping a day (or decades) per retry."""
    stand_in.faults[TAXONOMY] = {"status": 429, "headers": {"Retry-After": header}}
    started = time.monotonic()
    with pytest.raises(FetchError) as error:
        download(
            through(kind, stand_in, taxonomy_bucket), TAXONOMY, tmp_path / ".partial", 5, 0, 600
        )
    assert time.monotonic() - started < 5 and sleeps == []
    message = str(error.value)
    assert TAXONOMY in message and "max_retry_after_seconds (600 s)" in message
    assert "Run again later" in message and "raise fetch.max_retry_after_seconds" in message
    asked = int(message.split("asks to wait ")[1].split(" s")[0])
    assert asked == 86400 if header == "86400" else asked > 29 * 365 * 86400
    assert [s for _, s in gets(stand_in, TAXONOMY)] == [429]  # not retried


@BACK_ENDS
@pytest.mark.parametrize("header", ["inf", "nan", "1e999", "-5", "in a while"])
def test_unusable_retry_after_falls_back_to_backoff(
    kind, header, stand_in, taxonomy_bucket, mirror, tmp_path, sleeps
):
    """A Retry-After that is not a finite, non-negative wait is as if the server had not said:
    the usual backoff, no OverflowError from time.sleep(inf), no waiting forever."""
    stand_in.faults[TAXONOMY] = {"status": 503, "headers": {"Retry-After": header}}
    item = download(
        through(kind, stand_in, taxonomy_bucket), TAXONOMY, tmp_path / ".partial", 2, 0.25, 600
    )
    assert sleeps == [0.25]
    assert item.path.read_bytes() == (mirror / TAXONOMY).read_bytes()
    assert [s for _, s in gets(stand_in, TAXONOMY)] == [503, 206]


def test_retry_after_cap_is_the_fetch_setting(stand_in, bucket, tmp_path):
    """The cap is config.yaml's fetch.max_retry_after_seconds: the CLI stops on a wait above it,
    exit status 1, the object named, no traceback, no snapshot."""
    key = "metadata/inaturalist-open-data-20240827.tar.gz"
    stand_in.faults[key] = {"status": 503, "headers": {"Retry-After": "45"}}
    options = json.dumps(
        {
            "source": f"s3://{bucket}",
            "endpoint_url": stand_in.url,
            "timeout_seconds": 10,
            "max_retry_after_seconds": 30,
        }
    )
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow_scripts.fetch",
            "--settings",
            options,
            "--snapshot",
            "2024-08-27",
            "--out",
            str(tmp_path / "raw"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert time.monotonic() - started < 30  # start-up, not a 45 s wait
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert key in result.stderr and "asks to wait 45 s" in result.stderr
    assert "fetch.max_retry_after_seconds (30 s)" in result.stderr
    assert [s for _, s in gets(stand_in, key)] == [503]
    assert not (tmp_path / "raw").exists()


@BACK_ENDS
def test_server_ignoring_range_still_gives_the_right_bytes(
    kind, stand_in, taxonomy_bucket, mirror, tmp_path
):
    """Resuming, a server may answer 200 with the whole object instead of 206 from the offset: the
    bytes already on disk must not be written twice, and the answer is usable as it is (no retry:
    with retries 0 the resume must still succeed)."""
    source = through(kind, stand_in, taxonomy_bucket)
    stand_in.faults[TAXONOMY] = {"cut_after": 5000}
    with pytest.raises(
        FetchError, match="gave up after 0 retries"
    ):  # leaves 5000 bytes to resume from
        download(source, TAXONOMY, tmp_path / ".partial", 0, 0, 600)
    stand_in.faults[TAXONOMY] = {"ignore_range": True}
    item = download(source, TAXONOMY, tmp_path / ".partial", 0, 0, 600)
    assert item.path.read_bytes() == (mirror / TAXONOMY).read_bytes()
    assert gets(stand_in, TAXONOMY)[-1] == ("bytes=5000-", 200)


def corrupt_zip(data: bytes, how: str) -> bytes:
    """The taxonomy archive damaged in taxa.csv: a broken deflate stream, an unknown compression
    method, a CRC that does not match the bytes; or the archive cut in half."""
    local = zipfile.ZipFile(io.BytesIO(data)).getinfo("taxa.csv").header_offset
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 54] != b"taxa.csv":
        central = data.index(b"PK\x01\x02", central + 4)
    damaged = bytearray(data)
    if how == "deflate":
        name_len, extra_len = struct.unpack("<HH", data[local + 26 : local + 30])
        damaged[local + 30 + name_len + extra_len] = 0xFF  # deflate block type 3: reserved
    elif how == "method":
        damaged[central + 10 : central + 12] = struct.pack("<H", 99)
    elif how == "crc":
        damaged[local + 14] ^= 0xFF
        damaged[central + 16] ^= 0xFF
    else:
        return data[: len(data) // 2]
    return bytes(damaged)


@pytest.mark.parametrize("how", ["deflate", "method", "crc", "truncated"])
def test_corrupt_taxonomy_archive_is_a_clear_error(how, s3_server, mirror, tmp_path):
    """Whatever the damage to the DwC-A, the fetch ends with a FetchError (printed without a
    traceback) that names the archive and says to fetch again, and leaves nothing to resume."""
    bucket = f"corrupt-dwca-{how}"
    upload_mirror(
        s3_server,
        mirror,
        bucket,
        replace={TAXONOMY: corrupt_zip((mirror / TAXONOMY).read_bytes(), how)},
    )
    with pytest.raises(FetchError) as error:
        fetch(s3(s3_server, bucket), "2024-08-27", tmp_path / "{date}" / "raw")
    assert TAXONOMY in str(error.value) and "fetch again" in str(error.value).lower()
    assert not (tmp_path / "2024-08-27" / "raw").exists()
    assert not (
        tmp_path / "2024-08-27" / ".partial" / f"{TAXONOMY}.part"
    ).exists()  # not resumed next time


@BACK_ENDS
def test_refused_object_is_named_and_said_refused(kind, stand_in, s3_server, bucket, tmp_path):
    """A 403 is not a missing object and not worth retrying: the CLI says which object and that
    access was refused (what to change), without a traceback."""
    if kind == "s3":  # the bundle, from the bucket
        key, options = (
            "metadata/inaturalist-open-data-20240827.tar.gz",
            {"endpoint_url": stand_in.url},
        )
    else:  # the taxonomy archive, from a plain URL
        key, options = (
            TAXONOMY,
            {"endpoint_url": s3_server, "taxonomy": f"{stand_in.url}/{bucket}/{TAXONOMY}"},
        )
    stand_in.faults[key] = {"status": 403, "times": 10, "methods": ("HEAD", "GET")}
    options = json.dumps(
        {"source": f"s3://{bucket}", "retries": 1, "timeout_seconds": 10, **options}
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow_scripts.fetch",
            "--settings",
            options,
            "--snapshot",
            "2024-08-27",
            "--out",
            str(tmp_path / "raw"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert key in result.stderr and "access refused" in result.stderr
    assert [method for _, method, path in stand_in.arrived if key in path] == [
        "HEAD"
    ]  # not retried
    assert not (tmp_path / "raw").exists()


def test_refused_optional_table_is_an_error_not_a_skip(stand_in, bucket, tmp_path):
    """observers.csv.gz may be absent from `latest`, but a 403 on it is not absence: silently
    dropping the table would make a snapshot that differs from the source."""
    stand_in.faults["observers.csv.gz"] = {"status": 403, "times": 10, "methods": ("HEAD", "GET")}
    with pytest.raises(PermissionError, match="observers.csv.gz: access refused"):
        fetch(s3(stand_in.url, bucket), "latest", tmp_path / "{date}" / "raw")
    assert not (tmp_path / "2024-09-27" / "raw").exists()
