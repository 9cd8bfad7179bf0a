"""One chunk of a subset's images, downloaded with img2dataset, its retryable failures tried again.

    python -m workflow_scripts.images.download_chunk \\
        --subset data/snapshots/<date>/subsets/train.parquet \\
        --chunk 00000 --out data/snapshots/<date>/images/train/chunks/00000 [--config config.yaml]

Chunk N is the subset's rows N * `images.urls_per_job` onwards, in photo_id order, their
`photo_url` with the start rewritten by `images.url_rewrite` (urls.parquet: photo_id, url; a local
folder stays a folder there, so the list is the same on every run). Pass 0 fetches every URL of
the chunk; each of `images.retry_rounds` later passes
fetches only the images whose last failure was retryable (timeouts, connection errors, HTTP 5xx,
429 and 408), after waiting `images.retry_wait_seconds` (doubling), its list kept in
pass-N.urls.parquet; a 404 or 403 stays failed.
img2dataset's own tars, with photo_id and the image's sha256 in each shard's Parquet, go to
pass-N/; report.json counts what was attempted and downloaded, by pass and by final reason;
hashes.parquet has each downloaded image's perceptual hashes (workflow_scripts.images.perceptual).

The chunk is built in <out>.partial/ and renamed to <out> when every pass is done, so a killed job
leaves nothing a rerun takes for complete: the rerun resumes the partial folder (img2dataset's
incremental mode skips the shards a pass finished), unless the chunk's URL list changed. A URL
whose start is a local folder (`images.url_rewrite.to`, the sample's bucket) is fetched from that
folder, served over HTTP on a free local port while the job runs (images.photo_server: its
files, and the photos packed in the sample's photos.tar).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.config import local_path
from workflow_scripts.common.config import settings as images_settings
from workflow_scripts.common.duck import quote, write_parquet
from workflow_scripts.common.files import throughput, write_json
from workflow_scripts.images.perceptual import write_chunk_hashes
from workflow_scripts.images.photo_server import serving

# worth another pass: the server was busy or the connection failed, not the image
RETRYABLE = (
    r"HTTP Error (5\d\d|429|408)\b|timed out|[Cc]onnection|Remote end closed|reset by peer"
    r"|Temporary failure|EOF occurred"
)
NO_STATUS = "no status written by img2dataset"


class DownloadError(cli.StageError):
    """The download fell short of what the settings accept; the message says by how much."""


def pass_folders(chunk: Path) -> list[Path]:
    """img2dataset's output folders of a chunk's passes, in pass order."""
    return sorted(
        (p for p in chunk.glob("pass-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1])
    )


def outcomes(con: duckdb.DuckDBPyConnection, chunks: list[Path]) -> None:
    """Views over chunk folders (their URL lists and img2dataset's status files of every pass):
    `attempts` (photo_id, pass, status, reason, sha256, folder: one row per pass that tried an
    image), `outcomes` (photo_id, url, succeeded, attempts, reason: its last failure) and
    `successes` (photo_id, sha256, key, folder: where its image is)."""
    listed = [str(chunk / contracts.CHUNK_URLS) for chunk in chunks]
    con.execute(
        f"CREATE OR REPLACE VIEW listed AS SELECT photo_id, url FROM read_parquet({listed!r})"
        if listed
        else "CREATE OR REPLACE VIEW listed AS SELECT NULL::BIGINT AS photo_id, NULL::VARCHAR AS "
        "url WHERE false"
    )
    statuses = [
        str(folder / "*.parquet")
        for chunk in chunks
        for folder in pass_folders(chunk)
        if any(folder.glob("*.parquet"))
    ]
    source = (
        f"(SELECT photo_id, key, status, error_message, sha256, filename FROM "
        f"read_parquet({statuses!r}, "
        "filename=true))"
        if statuses
        else "(SELECT NULL::BIGINT AS photo_id, NULL AS key, NULL AS status, "
        "NULL AS error_message, NULL AS sha256, NULL AS filename WHERE false)"
    )
    con.execute(f"""CREATE OR REPLACE VIEW attempts AS
                    SELECT photo_id, key, status, error_message AS reason, sha256,
                           regexp_extract(filename, '(.*)/[^/]*$', 1) AS folder,
                           regexp_extract(filename, '/pass-(\\d+)/[^/]*$', 1)::INTEGER AS pass
                    FROM {source}""")
    con.execute(f"""CREATE OR REPLACE VIEW outcomes AS
                    SELECT l.photo_id, l.url,
                           coalesce(bool_or(a.status = 'success'), false) AS succeeded,
                           count(a.photo_id) AS attempts,
                           CASE WHEN NOT coalesce(bool_or(a.status = 'success'), false)
                                THEN coalesce(arg_max(a.reason, a.pass), {quote(NO_STATUS)})
                           END AS reason
                    FROM listed AS l LEFT JOIN attempts AS a USING (photo_id)
                    GROUP BY l.photo_id, l.url""")
    con.execute(
        "CREATE OR REPLACE VIEW successes AS SELECT photo_id, sha256, key, folder FROM attempts "
        "WHERE status = 'success'"
    )


def downloaded(con: duckdb.DuckDBPyConnection, report: Path) -> None:
    """The `outcomes` views of the subset whose download report this is: the chunk folders it names,
    beside it."""
    outcomes(
        con,
        [
            Path(contracts.chunk_folder(str(report.parent), name))
            for name in sorted(json.loads(report.read_text())["chunks"])
        ],
    )


def summary(con: duckdb.DuckDBPyConnection) -> dict:
    """attempted, succeeded, success_rate and failed_by_reason of the `outcomes` view."""
    attempted, succeeded = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE succeeded) FROM outcomes"
    ).fetchone()
    failed = dict(
        con.execute(
            "SELECT reason, count(*) FROM outcomes WHERE NOT succeeded GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    return {
        "attempted": attempted,
        "succeeded": succeeded,
        "success_rate": succeeded / attempted if attempted else 1.0,
        "failed_by_reason": failed,
    }


def download_chunk(subset: Path, chunk: int, out: Path, settings: dict | None = None) -> dict:
    """Download chunk `chunk` of the subset into the folder `out`; `settings`: config.yaml's
    `images` section."""
    settings = images_settings("images", settings)
    rewrite = settings["url_rewrite"]
    host = local_path(rewrite["to"]) if rewrite else None
    if host and not Path(host).is_dir():
        raise DownloadError(
            f"images.url_rewrite.to is {host}: no such folder (a URL, or a local copy of "
            f"the bucket)"
        )
    with serving(Path(host)) if host else contextlib.nullcontext() as port:
        return _download_chunk(
            subset, chunk, out, settings, (host, f"http://127.0.0.1:{port}") if host else None
        )


def url_list(subset: Path, chunk: int, settings: dict) -> str:
    """SQL: the chunk's rows (photo_id, url), their start rewritten by images.url_rewrite."""
    rewrite, size = settings["url_rewrite"], settings["urls_per_job"]
    url = (
        f"replace(photo_url, {quote(rewrite['from'])}, {quote(rewrite['to'])})"
        if rewrite
        else "photo_url"
    )
    return (
        f"SELECT photo_id, {url} AS url FROM read_parquet({quote(subset)}) ORDER BY photo_id "
        f"LIMIT {size} OFFSET {chunk * size}"
    )


def _download_chunk(
    subset: Path, chunk: int, out: Path, settings: dict, served: tuple[str, str] | None
) -> dict:
    """`served`: (a local folder the URLs name, the address it is served at while this runs)."""
    partial = out.with_name(out.name + ".partial")
    con = duckdb.connect()
    listed = out.with_name(out.name + ".urls.parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(con, url_list(subset, chunk, settings), listed)
    if (
        not (partial / contracts.CHUNK_URLS).is_file()
        or (partial / contracts.CHUNK_URLS).read_bytes() != listed.read_bytes()
    ):
        shutil.rmtree(partial, ignore_errors=True)  # another URL list: nothing to resume
        partial.mkdir(parents=True)
        listed.rename(partial / contracts.CHUNK_URLS)
    listed.unlink(missing_ok=True)
    for number in range(1 + settings["retry_rounds"]):
        todo = (
            retry_list(con, partial, number, settings) if number else partial / contracts.CHUNK_URLS
        )
        if not con.execute(f"SELECT count(*) FROM read_parquet({quote(todo)})").fetchone()[0]:
            break
        fetch_pass(con, todo, partial / f"pass-{number}", settings, served)
    outcomes(con, [partial])
    write_chunk_hashes(con, partial, partial / contracts.HASHES, settings["processes"])
    report = summary(con) | {
        "passes": [
            dict(zip(("pass", "attempted", "succeeded"), row))
            for row in con.execute(
                "SELECT pass, count(*), count(*) FILTER (WHERE status = 'success') FROM attempts "
                "GROUP BY 1 ORDER BY 1"
            ).fetchall()
        ]
    }
    write_json(partial / contracts.CHUNK_REPORT, report)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return report


def retry_list(con: duckdb.DuckDBPyConnection, partial: Path, number: int, settings: dict) -> Path:
    """Pass `number`'s list (photo_id, url): the images whose last failure was retryable, written
    once after waiting images.retry_wait_seconds (doubling); a resumed pass keeps its list, as
    img2dataset's incremental mode counts on."""
    listed = partial / f"pass-{number}.urls.parquet"
    if not listed.exists():
        outcomes(con, [partial])
        retried = (
            "SELECT photo_id, url FROM outcomes "
            f"WHERE NOT succeeded AND regexp_matches(reason, {quote(RETRYABLE)}) ORDER BY photo_id"
        )
        if con.execute(f"SELECT count(*) FROM ({retried})").fetchone()[0]:
            time.sleep(settings["retry_wait_seconds"] * 2 ** (number - 1))
        write_parquet(con, retried, listed)
    return listed


def fetch_pass(
    con: duckdb.DuckDBPyConnection,
    todo: Path,
    folder: Path,
    settings: dict,
    served: tuple[str, str] | None,
) -> None:
    """One img2dataset pass over the rows of the Parquet `todo` (photo_id, url) into `folder`
    (resumed if begun)."""
    os.environ.setdefault(
        "NO_ALBUMENTATIONS_UPDATE", "1"
    )  # img2dataset's albumentations would go online
    from img2dataset import download as img2dataset_download  # slow to import: only where it runs

    url = f"replace(url, {quote(served[0])}, {quote(served[1])})" if served else "url"
    listed = folder.with_name(
        folder.name + ".parquet"
    )  # what img2dataset reads: the served address for now
    con.execute(
        f"COPY (SELECT photo_id, {url} AS url FROM read_parquet({quote(todo)}) ORDER BY photo_id) "
        f"TO {quote(listed)} (FORMAT parquet)"
    )
    keep_bytes = settings["resize_mode"] == "no"  # then the image keeps its own bytes and format
    img2dataset_download(
        url_list=str(listed),
        input_format="parquet",
        url_col="url",
        save_additional_columns=["photo_id"],
        output_folder=str(folder),
        output_format="webdataset",
        incremental_mode="incremental",
        image_size=settings["image_size"],
        resize_mode=settings["resize_mode"],
        disable_all_reencoding=keep_bytes,
        retries=settings["retries"],
        timeout=settings["timeout_seconds"],
        processes_count=settings["processes"],
        thread_count=settings["threads"],
        number_sample_per_shard=settings["samples_per_tar"],
        enable_wandb=False,
        extract_exif=False,
    )  # unused (the shards keep the curated row), 5-10% of the CPU, and it can hold GPS


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="images")
    parser.add_argument(
        "--subset", type=Path, required=True, help="a subset Parquet (photo_id, photo_url)"
    )
    parser.add_argument("--chunk", required=True, help="which chunk (a number)")
    parser.add_argument("--out", type=Path, required=True, help="the chunk's folder")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with cli.running(args, inputs=[args.subset]) as settings:
        report = download_chunk(args.subset, int(args.chunk), args.out, settings)
    print(
        json.dumps(
            {k: report[k] for k in ("attempted", "succeeded", "failed_by_reason", "passes")}
        ),
        file=sys.stderr,
    )
    tars = list(args.out.glob("pass-*/*.tar"))
    print(
        f"downloaded {throughput(report['succeeded'], tars, time.perf_counter() - started)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
