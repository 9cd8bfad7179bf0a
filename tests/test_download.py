"""Downloads with img2dataset from local HTTP servers: URL chunks, failures counted and ledgered,
retryable failures tried again (404s not), the threshold on the final result, a killed chunk
resumed, a local folder served."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from PIL import Image

from tests.images import download
from tests.sample_tables import parquet_rows
from tests.test_good_bytes import png_header
from workflow_scripts.common import contracts
from workflow_scripts.common.tars import read_images
from workflow_scripts.images.download_chunk import DownloadError, download_chunk
from workflow_scripts.images.store import PACKS, write_index

S3 = "https://inaturalist-open-data.s3.amazonaws.com"
HTML = b"<!DOCTYPE html><html><body>Too many requests</body></html>"
FAST = {"retries": 0, "retry_wait_seconds": 0, "threads": 4, "timeout_seconds": 2}


def subset(
    path: Path, photo_ids: range, extra: list[tuple[int, str]] = (), rotated: set[int] = frozenset()
) -> Path:
    """A subset table of these photos (jpeg(i)'s width and height; swapped for the `rotated`)."""
    rows = [(i, f"{S3}/photos/{i}/medium.jpg") for i in photo_ids] + list(extra)
    sizes = {i: (20, 30 + i) if i in rotated else (30 + i, 20) for i, _ in rows}
    duckdb.sql(
        "CREATE OR REPLACE TABLE rows AS SELECT * FROM (VALUES "
        + ", ".join(f"({i}, '{u}', {sizes[i][0]}, {sizes[i][1]})" for i, u in rows)
        + ") AS t(photo_id, photo_url, width, height)"
    )
    duckdb.sql(f"COPY rows TO '{path}' (FORMAT parquet)")
    return path


def stored(folder: Path, image_store: Path) -> dict[int, bytes]:
    """The images a subset's chunks (in its image folder) hold, by photo_id, read from the store's
    packs at the places their manifests give."""
    manifests = sorted(str(path) for path in folder.glob(f"chunks/*/{contracts.CHUNK_IMAGES}"))
    rows = duckdb.sql(
        f'SELECT photo_id, pack, "offset", size FROM read_parquet({manifests!r}) ORDER BY 1'
    ).fetchall()
    read = read_images([(str(image_store / PACKS / pack), o, n) for _, pack, o, n in rows])
    return {row[0]: data for row, (_, data) in zip(rows, read)}


def jpeg(number: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30 + number, 20), (number * 9 % 256, 90, 30)).save(out, "JPEG")
    return out.getvalue()


def placeholder() -> bytes:
    """What a server sends in place of a photo it no longer shows (here: a grey square)."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(out, "PNG")
    return out.getvalue()


def bad_body(kind: str) -> tuple[bytes, int | None]:
    """A bad answer with status 200 and its declared length (None: the body ends as the connection
    closes)."""
    big = io.BytesIO()
    Image.linear_gradient("L").resize((640, 480)).save(big, "JPEG")
    return {
        "html": (HTML, len(HTML)),
        "cut": (big.getvalue()[: len(big.getvalue()) // 2], None),  # the connection dropped
        "short": (big.getvalue()[:2000], len(big.getvalue())),  # less than it declares
        "bomb": (png_header(8000, 8000), len(png_header(8000, 8000))),
        "placeholder": (placeholder(), len(placeholder())),
    }[kind]


class FlakyServer:
    """Photos 1-40 (by URL photos/<id>/medium.jpg); the ids in `flaky` answer 503 to their first
    request; `missing` answer 404; `bad` ({id: (kind, n)}) answer a bad_body(kind) to their first n
    requests; `trickle` send their body 10 bytes every 0.1 s (each read quick, the whole over 6 s),
    and are counted in `hung_up` when the client closed the connection before the end; every answer
    waits `delay` seconds."""

    def __init__(
        self,
        flaky: set[int] = frozenset(),
        missing: set[int] = frozenset(),
        delay: float = 0.0,
        bad: dict[int, tuple[str, int]] | None = None,
        trickle: set[int] = frozenset(),
    ):
        self.requests: dict[int, int] = {}
        self.hung_up: dict[int, int] = {}
        server, bad = self, bad or {}

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                photo_id = int(self.path.split("/")[2])
                server.requests[photo_id] = server.requests.get(photo_id, 0) + 1
                time.sleep(delay)
                if photo_id in missing or (photo_id in flaky and server.requests[photo_id] == 1):
                    self.send_response(404 if photo_id in missing else 503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, length = jpeg(photo_id), None
                if photo_id in bad and server.requests[photo_id] <= bad[photo_id][1]:
                    data, length = bad_body(bad[photo_id][0])
                self.send_response(200)
                if length is not None or photo_id not in bad:
                    self.send_header("Content-Length", str(length or len(data)))
                self.end_headers()
                if photo_id not in trickle:
                    self.wfile.write(data)
                    return
                try:
                    for start in range(0, len(data), 10):
                        self.wfile.write(data[start : start + 10])
                        time.sleep(0.1)
                except OSError:  # the client gave up
                    server.hung_up[photo_id] = server.hung_up.get(photo_id, 0) + 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def flaky():
    servers = []

    def start(**faults) -> FlakyServer:
        servers.append(FlakyServer(**faults))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.slow
def test_chunks_failures_counted_and_ledgered(photo_server, tmp_path):
    served, silent, _ = photo_server
    table = subset(
        tmp_path / "subset.parquet", range(1, 10), [(10, f"{silent}/photos/10/medium.jpg")]
    )
    settings = {
        **FAST,
        "url_rewrite": {"from": S3, "to": served},
        "urls_per_job": 3,
        "retry_rounds": 0,
        "min_success_rate": 0.8,
    }
    report = download(
        table, tmp_path / "images", settings
    )  # photo 9: a 404; photo 10: a silent socket
    assert (report["attempted"], report["succeeded"]) == (10, 8)
    assert sorted(report["chunks"]) == ["00000", "00001", "00002", "00003"]  # chunks of 3 URLs
    assert [c["attempted"] for c in report["chunks"].values()] == [3, 3, 3, 1]
    reasons = report["failed_by_reason"]
    assert (
        len(reasons) == 2
        and any("404" in r for r in reasons)
        and any("timed out" in r for r in reasons)
    )
    ledger = parquet_rows(tmp_path / "images" / contracts.FAILURES)
    assert [(r["photo_id"], r["attempts"]) for r in ledger] == [(9, 1), (10, 1)]
    assert ledger[0]["url"] == f"{served}/photos/9/medium.jpg" and "404" in ledger[0]["reason"]
    kept = stored(tmp_path / "images", tmp_path / "store")
    mirror = tmp_path / "mirror" / "photos"  # what the server served
    assert kept == {i: (mirror / str(i) / "medium.jpg").read_bytes() for i in range(1, 9)}


@pytest.mark.slow
def test_retryable_failures_are_tried_again_and_404s_stay_failed(flaky, tmp_path):
    server = flaky(flaky={2, 5, 7}, missing={9})
    table = subset(tmp_path / "subset.parquet", range(1, 11))
    settings = {
        **FAST,
        "url_rewrite": {"from": S3, "to": server.url},
        "retry_rounds": 2,
        "min_success_rate": 0.9,
    }
    report = download(table, tmp_path / "images", settings)
    assert (report["attempted"], report["succeeded"]) == (
        10,
        9,
    )  # the 503s recovered; the 404 did not
    assert [r["photo_id"] for r in parquet_rows(tmp_path / "images" / contracts.FAILURES)] == [9]
    assert (
        parquet_rows(tmp_path / "images" / contracts.FAILURES)[0]["attempts"] == 1
    )  # a 404 is final
    assert report["chunks"]["00000"]["passes"] == [
        {"pass": 0, "attempted": 10, "succeeded": 6},
        {"pass": 1, "attempted": 3, "succeeded": 3},
    ]
    assert server.requests[9] == 1 and all(server.requests[i] == 2 for i in (2, 5, 7))

    without = flaky(
        flaky={2, 5, 7}, missing={9}
    )  # no retries: the threshold sees the first pass's 60%
    settings = {**settings, "url_rewrite": {"from": S3, "to": without.url}, "retry_rounds": 0}
    with pytest.raises(
        DownloadError, match=r"6 of 10 images downloaded \(60.0%\), below images.min_success_rate"
    ):
        download(table, tmp_path / "other", settings)
    assert all(
        (tmp_path / "other" / name).exists()
        for name in (contracts.DOWNLOAD_REPORT, contracts.FAILURES)
    )


@pytest.mark.slow
def test_a_resumed_chunk_makes_its_retry_pass_alone(flaky, tmp_path):
    """A chunk stopped after its first pass (its folder still .partial) resumes with the retry pass
    alone: the 503s fetched again, nothing else."""
    server = flaky(flaky={3, 4})
    table = subset(tmp_path / "subset.parquet", range(1, 9))
    settings = {**FAST, "url_rewrite": {"from": S3, "to": server.url}, "retry_rounds": 0}
    chunk = tmp_path / "chunks" / "00000"
    download_chunk(table, 0, chunk, settings, image_store=tmp_path / "store")
    chunk.rename(chunk.with_name("00000.partial"))  # as if killed before its retry pass
    report = download_chunk(
        table, 0, chunk, {**settings, "retry_rounds": 1}, image_store=tmp_path / "store"
    )
    assert (report["attempted"], report["succeeded"]) == (8, 8)
    assert report["passes"] == [
        {"pass": 0, "attempted": 8, "succeeded": 6},
        {"pass": 1, "attempted": 2, "succeeded": 2},
    ]
    assert server.requests == {i: 2 if i in (3, 4) else 1 for i in range(1, 9)}
    assert [r["photo_id"] for r in parquet_rows(chunk / "pass-1.urls.parquet")] == [3, 4]


@pytest.mark.slow
def test_a_killed_chunk_leaves_nothing_complete_and_a_rerun_resumes(flaky, tmp_path):
    server = flaky(delay=0.1)
    table = subset(tmp_path / "subset.parquet", range(1, 41))
    settings = {
        **FAST,
        "url_rewrite": {"from": S3, "to": server.url},
        "threads": 1,
        "samples_per_tar": 10,
    }
    chunk = tmp_path / "chunks" / "00000"
    command = [
        sys.executable,
        "-m",
        "workflow_scripts.images.download_chunk",
        "--subset",
        str(table),
        "--chunk",
        "0",
        "--out",
        str(chunk),
        "--store",
        str(tmp_path / "store"),
        "--settings",
        json.dumps(settings),
    ]
    child = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    partial = chunk.with_name("00000.partial") / "pass-0"
    deadline = time.monotonic() + 60
    while len(list(partial.glob("*_stats.json"))) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)  # img2dataset's workers too
    child.wait()
    assert (
        child.returncode == -signal.SIGKILL and not chunk.exists()
    )  # nothing a rerun takes for complete
    done = len(list(partial.glob("*_stats.json")))
    assert 1 <= done < 4
    fetched = sum(server.requests.values())
    subprocess.run(command, check=True, capture_output=True)
    report = json.loads((chunk / contracts.CHUNK_REPORT).read_text())
    assert (report["attempted"], report["succeeded"]) == (40, 40)
    assert (
        sum(server.requests.values()) - fetched <= 40 - 10 * done
    )  # the finished tars were not fetched again
    manifest = parquet_rows(chunk / contracts.CHUNK_IMAGES)
    assert len(manifest) == 40 and all(
        (tmp_path / "store" / PACKS / row["pack"]).is_file() for row in manifest
    )  # no entry names a missing or partial pack
    assert not list((tmp_path / "store" / PACKS / ".tmp").iterdir())


def test_an_empty_subset_is_an_empty_download(tmp_path):
    empty = tmp_path / "empty.parquet"
    duckdb.sql(
        f"COPY (SELECT 1::BIGINT AS photo_id, 'x' AS photo_url, 1 AS width, 1 AS height "
        f"WHERE false) TO '{empty}' (FORMAT parquet)"
    )
    report = download(empty, tmp_path / "images", {"url_rewrite": None})
    assert (report["attempted"], report["succeeded"], report["success_rate"]) == (0, 0, 1.0)


@pytest.mark.slow
def test_a_local_folder_is_served_while_downloading_and_the_url_list_stays_the_same(
    photo_server, tmp_path
):
    """url_rewrite to a folder laid out like the bucket (the sample's): served on a free port for
    the run, while the URL lists (what a rerun resumes from) name the folder, not the port."""
    _, _, mirror = photo_server
    table = subset(tmp_path / "subset.parquet", range(1, 9))
    settings = {"url_rewrite": {"from": S3, "to": str(mirror)}, "threads": 2}
    lists = []
    for run in range(2):
        report = download(table, tmp_path / f"images{run}", settings)
        assert (report["attempted"], report["succeeded"]) == (8, 8)
        lists.append(
            Path(
                contracts.chunk_folder(str(tmp_path / f"images{run}"), "00000"),
                contracts.CHUNK_URLS,
            )
        )
    assert lists[0].read_bytes() == lists[1].read_bytes()
    urls = [r["url"] for r in parquet_rows(lists[0])]
    assert all(url.startswith(f"{mirror}/photos/") for url in urls)
    with pytest.raises(DownloadError, match="images.url_rewrite.to is .*/nowhere: no such folder"):
        download(
            table,
            tmp_path / "other",
            {"url_rewrite": {"from": S3, "to": str(tmp_path / "nowhere")}},
        )


@pytest.mark.slow
def test_only_good_bytes_are_kept(flaky, tmp_path):
    """Bodies that are not the image are failures with their reason, never stored: an HTML page
    and a body cut short are tried again (and pass once the server sends the image), a bomb and a
    known placeholder are final."""
    server = flaky(
        bad={
            5: ("html", 1),
            6: ("cut", 1),
            7: ("bomb", 9),
            8: ("placeholder", 9),
            9: ("html", 9),
            10: ("short", 9),
        }
    )
    table = subset(tmp_path / "subset.parquet", range(1, 11))
    denied = hashlib.sha256(placeholder()).hexdigest()
    settings = {
        **FAST,
        "url_rewrite": {"from": S3, "to": server.url},
        "retry_rounds": 1,
        "min_success_rate": 0.5,
        "placeholder_sha256": [denied],
    }
    report = download(table, tmp_path / "images", settings)
    assert (report["succeeded"], report["placeholder"]) == (6, 1)
    assert server.requests == {**{i: 1 for i in range(1, 11)}, 5: 2, 6: 2, 9: 2, 10: 2}
    reasons = {
        r["photo_id"]: r["reason"] for r in parquet_rows(tmp_path / "images" / "failures.parquet")
    }
    assert sorted(reasons) == [7, 8, 9, 10]
    assert reasons[7].startswith("decompression bomb: 8000 x 8000 pixels")
    assert reasons[8] == f"placeholder image (sha256 {denied}, in images.placeholder_sha256)"
    assert reasons[9].startswith("not an image") and "IncompleteRead" in reasons[10]
    kept = stored(tmp_path / "images", tmp_path / "store")
    assert kept == {i: jpeg(i) for i in range(1, 7)}  # the image itself, not the bad first answers
    packed = b"".join(path.read_bytes() for path in (tmp_path / "store").rglob("*.tar"))
    assert HTML not in packed and placeholder() not in packed


@pytest.mark.slow
def test_a_second_month_fetches_only_what_the_store_lacks(flaky, tmp_path):
    """Month 2 lists photos 1-10, photo 3 rotated (its width and height swapped): only 3, 9 and 10
    are fetched, and its hashes, failures and counts are those of a download into an empty store."""
    server = flaky(missing={10})
    settings = {**FAST, "url_rewrite": {"from": S3, "to": server.url}, "min_success_rate": 0.5}
    store = tmp_path / "store"
    download(subset(tmp_path / "m1.parquet", range(1, 9)), tmp_path / "m1", settings, None, store)
    index = tmp_path / "index.parquet"
    manifests = sorted((tmp_path / "m1").glob(f"chunks/*/{contracts.CHUNK_IMAGES}"))
    write_index(duckdb.connect(), manifests, None, date(2024, 8, 27), 2, store, index)
    before = dict(server.requests)
    second = subset(tmp_path / "m2.parquet", range(1, 11), rotated={3})
    report = download(second, tmp_path / "m2", settings, index, store)
    fetched = {i: n - before.get(i, 0) for i, n in server.requests.items() if n != before.get(i)}
    assert fetched == {3: 1, 9: 1, 10: 1}
    assert report["store"] == {"reused": 7, "downloaded": 1, "redownloaded": 1}
    fresh = download(second, tmp_path / "fresh", settings, None, tmp_path / "empty")
    for name in (contracts.HASHES, contracts.FAILURES):
        assert (tmp_path / "m2" / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()
    assert stored(tmp_path / "m2", store) == stored(tmp_path / "fresh", tmp_path / "empty")
    unchanged = {"chunks", "store"}  # where the images came from, and the chunks' own reports
    assert {k: v for k, v in report.items() if k not in unchanged} == {
        k: v for k, v in fresh.items() if k not in unchanged
    }


@pytest.mark.slow
def test_a_trickling_server_is_cut_by_the_total_time_limit(flaky, tmp_path):
    """A server sending a few bytes now and then never trips timeout_seconds (each read is quick),
    but the whole image takes longer than images.max_seconds_per_image: a failure (img2dataset's
    worker processes use the bounded download), retryable like any timeout, and nothing of it is
    stored."""
    server = flaky(trickle={3})
    table = subset(tmp_path / "subset.parquet", range(1, 6))
    settings = {
        **FAST,
        "url_rewrite": {"from": S3, "to": server.url},
        "timeout_seconds": 2,
        "max_seconds_per_image": 1.5,
        "retry_rounds": 1,
        "min_success_rate": 0.5,
    }
    report = download(table, tmp_path / "images", settings)
    assert (report["attempted"], report["succeeded"]) == (5, 4)
    failures = parquet_rows(tmp_path / "images" / contracts.FAILURES)
    assert [(r["photo_id"], r["attempts"]) for r in failures] == [(3, 2)]
    assert failures[0]["reason"] == (
        "timed out: the whole image took over images.max_seconds_per_image (1.5 s)"
    )
    assert server.requests == {
        **{i: 1 for i in range(1, 6)},
        3: 2,  # retryable: fetched again on the retry pass, and cut again
    }
    deadline = time.monotonic() + 2  # the server sees it at its next write or the one after
    while server.hung_up != {3: 2} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.hung_up == {3: 2}  # the client gave up before the body's end, both times
    kept = stored(tmp_path / "images", tmp_path / "store")
    assert kept == {i: jpeg(i) for i in (1, 2, 4, 5)}
    packed = b"".join(path.read_bytes() for path in (tmp_path / "store").rglob("*.tar"))
    assert jpeg(3) not in packed
