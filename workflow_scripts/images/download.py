"""Images of one subset, downloaded with img2dataset, with every failure accounted for.

    python -m workflow_scripts.images.download --subset data/snapshots/<date>/subsets/train.parquet \
        --out data/snapshots/<date>/images/train [--config config.yaml]

Reads the subset's `photo_url`, the start rewritten by `images.url_rewrite` (to a URL, or to a
local folder laid out like the bucket, which is served over HTTP on a free local port while
img2dataset runs: the generated sample's), and writes img2dataset's webdataset tars (`tars/`, with
photo_id and the image's sha256 in each shard's Parquet) and download_report.json: attempted,
succeeded, failed by reason, the failed photo_ids. img2dataset's incremental mode resumes an
interrupted download of the same URL list (shards already done are kept); a changed list starts
afresh. Fails when the success rate is below `images.min_success_rate`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.config import local_path
from workflow_scripts.common.config import settings as images_settings
from workflow_scripts.common.duck import quote
from workflow_scripts.common.files import throughput, write_json

SERVED_URLS = "served_urls.parquet"


class DownloadError(cli.StageError):
    """The download fell short of what the settings accept; the message says by how much."""


@contextlib.contextmanager
def serving(folder: Path):
    """Serve a folder over HTTP on a free local port, from its own process (img2dataset forks
    workers: a server thread in this process would be copied into them). Yields the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise DownloadError(f"the local server of {folder} did not start on port {port}")
        yield port
    finally:
        server.terminate()
        server.wait()


def download(subset: Path, out: Path, settings: dict | None = None) -> dict:
    """Download one subset's images into `out`; `settings`: config.yaml's `images` section."""
    settings = images_settings("images", settings)
    rewrite = settings["url_rewrite"]
    host = local_path(rewrite["to"]) if rewrite else None
    if host and not Path(host).is_dir():
        raise DownloadError(f"images.url_rewrite.to is {host}: no such folder (a URL, or a local copy of the bucket)")
    with serving(Path(host)) if host else contextlib.nullcontext() as port:
        return _download(subset, out, settings, (host, f"http://127.0.0.1:{port}") if host else None)


def _download(subset: Path, out: Path, settings: dict, served: tuple[str, str] | None) -> dict:
    """`served`: (a local folder the URLs name, the address it is served at while this runs). The
    URL list keeps the folder: the same list on every run, so an interrupted download resumes."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # img2dataset's albumentations would go online
    from img2dataset import download as img2dataset_download  # slow to import: only where it runs

    out.mkdir(parents=True, exist_ok=True)
    urls, tars = out / contracts.URL_LIST, out / contracts.IMAGE_TARS
    rewrite = settings["url_rewrite"]
    url = (f"replace(photo_url, {quote(rewrite['from'])}, {quote(rewrite['to'])})" if rewrite else "photo_url")
    previous = urls.read_bytes() if urls.exists() else None
    duckdb.sql(f"COPY (SELECT photo_id, {url} AS url FROM read_parquet({quote(subset)}) ORDER BY photo_id) "
               f"TO {quote(urls)} (FORMAT parquet)")
    if previous != urls.read_bytes():  # img2dataset resumes by shard number: only the same URL list may resume
        shutil.rmtree(tars, ignore_errors=True)
    fetched = urls
    if served:  # what img2dataset reads: the folder's address for this run
        fetched = out / SERVED_URLS
        duckdb.sql(f"COPY (SELECT photo_id, replace(url, {quote(served[0])}, {quote(served[1])}) AS url "
                   f"FROM read_parquet({quote(urls)})) TO {quote(fetched)} (FORMAT parquet)")
    keep_bytes = settings["resize_mode"] == "no"  # then the image keeps its own bytes and format
    if duckdb.sql(f"SELECT count(*) FROM read_parquet({quote(urls)})").fetchone()[0]:  # img2dataset needs a row
        img2dataset_download(
            url_list=str(fetched), input_format="parquet", url_col="url", save_additional_columns=["photo_id"],
            output_folder=str(tars), output_format="webdataset", incremental_mode="incremental",
            image_size=settings["image_size"], resize_mode=settings["resize_mode"], disable_all_reencoding=keep_bytes,
            retries=settings["retries"], timeout=settings["timeout_seconds"], processes_count=settings["processes"],
            thread_count=settings["threads"], number_sample_per_shard=settings["samples_per_tar"], enable_wandb=False)
    report = download_report(urls, tars)
    write_json(out / contracts.DOWNLOAD_REPORT, report)
    if report["success_rate"] < settings["min_success_rate"]:
        raise DownloadError(f"{subset}: {report['succeeded']} of {report['attempted']} images downloaded "
                            f"({report['success_rate']:.1%}), below images.min_success_rate "
                            f"({settings['min_success_rate']:.0%}); failures by reason in "
                            f"{out / contracts.DOWNLOAD_REPORT}")
    return report


def statuses(tars: Path) -> str:
    """SQL for img2dataset's per-shard status Parquet files (photo_id, key, status, error_message,
    sha256 of the downloaded bytes): empty when it wrote none (an empty subset)."""
    if any(tars.glob("*.parquet")):
        return f"read_parquet({quote(tars / '*.parquet')})"
    return ("(SELECT NULL::BIGINT AS photo_id, NULL AS key, NULL AS status, NULL AS error_message, NULL AS sha256 "
            "WHERE false)")


def download_report(urls: Path, tars: Path) -> dict:
    """Counts from img2dataset's per-shard Parquet files; a URL missing from them counts as failed."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW attempts AS SELECT u.photo_id, coalesce(s.status, 'missing') AS status, "
                f"coalesce(s.error_message, 'no status written by img2dataset') AS reason "
                f"FROM read_parquet({quote(urls)}) AS u LEFT JOIN {statuses(tars)} AS s USING (photo_id)")
    attempted, succeeded = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'success') FROM attempts").fetchone()
    failed = con.execute("SELECT reason, list(photo_id ORDER BY photo_id) FROM attempts "
                         "WHERE status <> 'success' GROUP BY reason ORDER BY reason").fetchall()
    return {"attempted": attempted, "succeeded": succeeded, "success_rate": succeeded / attempted if attempted else 1.0,
            "failed_by_reason": {reason: len(ids) for reason, ids in failed},
            "failed_photo_ids": sorted(i for _, ids in failed for i in ids)}


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="images")
    parser.add_argument("--subset", type=Path, required=True, help="a subset Parquet (photo_id, photo_url)")
    parser.add_argument("--out", type=Path, required=True, help="the subset's image folder")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with cli.running(args, inputs=[args.subset]) as settings:
        report = download(args.subset, args.out, settings)
    print(json.dumps({k: report[k] for k in ("attempted", "succeeded", "failed_by_reason")}), file=sys.stderr)
    print(f"downloaded {throughput(report['succeeded'], args.out / contracts.IMAGE_TARS, time.perf_counter() - started)}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
