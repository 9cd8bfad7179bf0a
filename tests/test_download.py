"""Downloads with img2dataset from a local HTTP server: failures counted, the threshold enforced."""

from __future__ import annotations

import tarfile
from pathlib import Path

import duckdb
import pytest

from workflow_scripts.images.download import DownloadError, download

S3 = "https://inaturalist-open-data.s3.amazonaws.com"


def subset(path: Path, silent: str) -> Path:
    rows = [(i, f"{S3}/photos/{i}/medium.jpg") for i in range(1, 9)]
    rows += [(9, f"{S3}/photos/9/medium.jpg"), (10, f"{silent}/photos/10/medium.jpg")]   # a 404 and a timeout
    duckdb.sql("CREATE OR REPLACE TABLE rows AS SELECT * FROM (VALUES " + ", ".join(f"({i}, '{u}')" for i, u in rows)
               + ") AS t(photo_id, photo_url)")
    duckdb.sql(f"COPY rows TO '{path}' (FORMAT parquet)")
    return path


def test_failures_are_counted_and_the_run_goes_on(photo_server, tmp_path):
    served, silent, mirror = photo_server
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
    png = (mirror / "photos" / "8" / "medium.jpg").read_bytes()
    assert png in images.values()                     # bytes kept as served (resize_mode: no)


def test_a_success_rate_below_the_threshold_fails(photo_server, tmp_path):
    served, silent, _ = photo_server
    settings = {"url_rewrite": {"from": S3, "to": served}, "timeout_seconds": 1, "retries": 0, "threads": 4,
                "min_success_rate": 0.9}
    with pytest.raises(DownloadError, match=r"8 of 10 images downloaded \(80.0%\), below images.min_success_rate"):
        download(subset(tmp_path / "subset.parquet", silent), tmp_path / "images", settings)
    assert (tmp_path / "images" / "download_report.json").exists()


def test_an_empty_subset_is_an_empty_download(tmp_path):
    empty = tmp_path / "empty.parquet"
    duckdb.sql(f"COPY (SELECT 1::BIGINT AS photo_id, 'x' AS photo_url WHERE false) TO '{empty}' (FORMAT parquet)")
    report = download(empty, tmp_path / "images", {"url_rewrite": None})
    assert (report["attempted"], report["succeeded"], report["success_rate"]) == (0, 0, 1.0)


def test_a_local_folder_is_served_while_downloading_and_the_url_list_stays_the_same(photo_server, tmp_path):
    """url_rewrite to a folder laid out like the bucket (the sample's): served on a free port for the
    run, while the URL list (what a rerun resumes from) names the folder, not the port."""
    _, _, mirror = photo_server
    table = tmp_path / "subset.parquet"
    duckdb.sql(f"COPY (SELECT i::BIGINT AS photo_id, '{S3}/photos/' || i || '/medium.jpg' AS photo_url "
               f"FROM range(1, 9) AS t(i)) TO '{table}' (FORMAT parquet)")
    settings = {"url_rewrite": {"from": S3, "to": str(mirror)}, "threads": 2}
    lists = []
    for run in range(2):
        report = download(table, tmp_path / "images", settings)
        assert (report["attempted"], report["succeeded"]) == (8, 8)
        lists.append((tmp_path / "images" / "urls.parquet").read_bytes())
    assert lists[0] == lists[1]
    urls = [r[0] for r in duckdb.sql(f"SELECT url FROM '{tmp_path / 'images' / 'urls.parquet'}'").fetchall()]
    assert all(url.startswith(f"{mirror}/photos/") for url in urls)
    with pytest.raises(DownloadError, match="images.url_rewrite.to is .*/nowhere: no such folder"):
        download(table, tmp_path / "other", {"url_rewrite": {"from": S3, "to": str(tmp_path / "nowhere")}})
