"""Downloads with img2dataset from local HTTP servers: URL chunks, failures counted and ledgered,
retryable failures tried again (404s not), the threshold on the final result, a killed chunk
resumed, a local folder served."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest
from PIL import Image

from tests.images import download
from tests.sample_tables import parquet_rows
from workflow_scripts.common import contracts
from workflow_scripts.images.download_chunk import DownloadError, download_chunk

S3 = "https://inaturalist-open-data.s3.amazonaws.com"
FAST = {"retries": 0, "retry_wait_seconds": 0, "threads": 4, "timeout_seconds": 2}


def subset(path: Path, photo_ids: range, extra: list[tuple[int, str]] = ()) -> Path:
    rows = [(i, f"{S3}/photos/{i}/medium.jpg") for i in photo_ids] + list(extra)
    duckdb.sql(
        "CREATE OR REPLACE TABLE rows AS SELECT * FROM (VALUES "
        + ", ".join(f"({i}, '{u}')" for i, u in rows)
        + ") AS t(photo_id, photo_url)"
    )
    duckdb.sql(f"COPY rows TO '{path}' (FORMAT parquet)")
    return path


def jpeg(number: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30 + number, 20), (number * 9 % 256, 90, 30)).save(out, "JPEG")
    return out.getvalue()


class FlakyServer:
    """Photos 1-40 (by URL photos/<id>/medium.jpg); the ids in `flaky` answer 503 to their first
    request; `missing` answer 404; every answer waits `delay` seconds."""

    def __init__(
        self, flaky: set[int] = frozenset(), missing: set[int] = frozenset(), delay: float = 0.0
    ):
        self.requests: dict[int, int] = {}
        server = self

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
                data = jpeg(photo_id)
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

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
    images = []
    for tar in sorted(
        (tmp_path / "images" / "chunks").glob("*/pass-0/*.tar")
    ):  # img2dataset's, per chunk
        with tarfile.open(tar) as archive:
            images += [archive.extractfile(m).read() for m in archive if m.name.endswith(".jpg")]
    assert len(images) == 8


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
    download_chunk(table, 0, chunk, settings)
    chunk.rename(chunk.with_name("00000.partial"))  # as if killed before its retry pass
    report = download_chunk(table, 0, chunk, {**settings, "retry_rounds": 1})
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


def test_an_empty_subset_is_an_empty_download(tmp_path):
    empty = tmp_path / "empty.parquet"
    duckdb.sql(
        f"COPY (SELECT 1::BIGINT AS photo_id, 'x' AS photo_url WHERE false) TO '{empty}' "
        f"(FORMAT parquet)"
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
