"""Downloads with img2dataset from a local HTTP server: failures counted, the threshold enforced."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import duckdb
import pytest
from PIL import Image

from workflow_scripts.download import DownloadError, download

S3 = "https://inaturalist-open-data.s3.amazonaws.com"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mirror(tmp_path):
    """Eight photos served over HTTP from their own process; a second port accepts and never answers."""
    for photo_id in range(1, 9):
        folder = tmp_path / "mirror" / "photos" / str(photo_id)
        folder.mkdir(parents=True)
        data = io.BytesIO()
        Image.new("RGB", (40 + photo_id, 30), (photo_id * 20, 80, 120)).save(data, "PNG" if photo_id == 8 else "JPEG")
        (folder / ("medium.png" if photo_id == 8 else "medium.jpg")).write_bytes(data.getvalue())
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(tmp_path / "mirror")], stderr=subprocess.DEVNULL)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", f"http://127.0.0.1:{silent.getsockname()[1]}"
    server.terminate()
    server.wait()
    silent.close()


def subset(path: Path, silent: str) -> Path:
    rows = [(i, f"{S3}/photos/{i}/medium.{'png' if i == 8 else 'jpg'}") for i in range(1, 9)]
    rows += [(9, f"{S3}/photos/9/medium.jpg"), (10, f"{silent}/photos/10/medium.jpg")]   # a 404 and a timeout
    duckdb.sql("CREATE OR REPLACE TABLE rows AS SELECT * FROM (VALUES " + ", ".join(f"({i}, '{u}')" for i, u in rows)
               + ") AS t(photo_id, photo_url)")
    duckdb.sql(f"COPY rows TO '{path}' (FORMAT parquet)")
    return path


def test_failures_are_counted_and_the_run_goes_on(mirror, tmp_path):
    served, silent = mirror
    settings = {"url_rewrite": {"from": S3, "to": served}, "timeout_seconds": 2, "retries": 0, "threads": 4,
                "min_success_rate": 0.8}
    report = download(subset(tmp_path / "subset.parquet", silent), tmp_path / "images", settings)
    assert (report["attempted"], report["succeeded"], report["failed_photo_ids"]) == (10, 8, [9, 10])
    reasons = report["failed_by_reason"]
    assert len(reasons) == 2 and set(reasons.values()) == {1}
    assert any("404" in reason for reason in reasons) and any("timed out" in reason for reason in reasons)
    images = {}
    for tar in sorted((tmp_path / "images" / "tars").glob("*.tar")):
        with tarfile.open(tar) as archive:
            images.update({m.name: archive.extractfile(m).read() for m in archive if m.name.endswith(".jpg")})
    assert len(images) == 8
    png = (tmp_path / "mirror" / "photos" / "8" / "medium.png").read_bytes()
    assert png in images.values()                     # bytes kept as served (resize_mode: no)


def test_a_success_rate_below_the_threshold_fails(mirror, tmp_path):
    served, silent = mirror
    settings = {"url_rewrite": {"from": S3, "to": served}, "timeout_seconds": 1, "retries": 0, "threads": 4,
                "min_success_rate": 0.9}
    with pytest.raises(DownloadError, match=r"8 of 10 images downloaded \(80.0%\), below images.min_success_rate"):
        download(subset(tmp_path / "subset.parquet", silent), tmp_path / "images", settings)
    assert (tmp_path / "images" / "download_report.json").exists()
