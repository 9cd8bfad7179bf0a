"""One chunk of a subset's images: what the image store already holds under the same key is reused,
the rest downloaded with img2dataset (its retryable failures tried again), checked and packed into
the store.

    python -m workflow_scripts.images.download_chunk \\
        --subset data/snapshots/<date>/subsets/train.parquet --chunk 00000 \\
        --out data/snapshots/<date>/images/train/chunks/00000 --store data/store \\
        [--previous-index data/store/index/<earlier date>.parquet] [--config config.yaml]

Chunk N is the subset's rows N * `images.urls_per_job` onwards, in photo_id order, their
`photo_url` with the start rewritten by `images.url_rewrite` (urls.parquet: photo_id, url, and the
store's key: rendition, width, height; a local folder stays a folder there, so the list is the same
on every run). The previous snapshot's store index (images/store.py) decides which images are
reused (reused.parquet). Pass 0 fetches the others; each of `images.retry_rounds` later passes
fetches only the images whose last failure was retryable (timeouts, an image over
`images.max_seconds_per_image` in all, connection errors, HTTP 5xx, 429 and 408, a body short of
its length, not an image), after waiting `images.retry_wait_seconds` (doubling), its list kept in
pass-N.urls.parquet; a 404 or 403 stays failed. Every downloaded body is checked
(images/good_bytes.py: pass-N.checked.parquet) before it counts: a placeholder, a bomb, a
truncated or undecodable image is a failure with its reason. The good ones go into the store's
packs, and images.parquet lists every image of the chunk, reused or new, with its sha256, PDQ
hashes and place in the store: what the download report, the image overlap check and the shards
read. report.json counts what was attempted, downloaded and reused, by pass and by final reason.

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
from workflow_scripts.images import chunk_images, good_bytes, store
from workflow_scripts.images.photo_server import serving

# img2dataset's errors worth another pass: the server was busy or the connection failed, not the
# image, or the body fell short of its length (our own checks say which of theirs are: good_bytes)
RETRYABLE = (
    r"HTTP Error (5\d\d|429|408)\b|timed out|[Cc]onnection|Remote end closed|reset by peer"
    r"|Temporary failure|EOF occurred|IncompleteRead"
)
NO_STATUS = "no status written by img2dataset"
NOT_CHECKED = "downloaded but not checked"  # a job killed between a pass and its check


class DownloadError(cli.StageError):
    """The download fell short of what the settings accept; the message says by how much."""


def pass_folders(chunk: Path) -> list[Path]:
    """img2dataset's output folders of a chunk's passes, in pass order."""
    return sorted(
        (p for p in chunk.glob("pass-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1])
    )


def outcomes(con: duckdb.DuckDBPyConnection, chunks: list[Path]) -> None:
    """Views over chunk folders (their URL lists, the store's verdicts, img2dataset's status
    files of every pass and our checks of what it fetched):
    - `attempts` (photo_id, key, chunk, pass, status, reason, retryable): one row per pass that
      tried an image; a body that failed its check is a failure;
    - `outcomes` (photo_id, url, succeeded, attempts, reason and retryable: its last failure's): a
      reused image succeeded in 0 attempts;
    - `successes`: the images of the complete chunks (their images.parquet,
      store.MANIFEST_COLUMNS: where each is in the store, its sha256, hashes and origin)."""
    listed = files(chunks, contracts.CHUNK_URLS, (("photo_id", "BIGINT"), ("url", "VARCHAR")))
    con.execute(f"CREATE OR REPLACE VIEW listed AS SELECT photo_id, url FROM {listed}")
    reused = files(chunks, chunk_images.REUSED, (("photo_id", "BIGINT"), ("origin", "VARCHAR")))
    con.execute(
        f"CREATE OR REPLACE VIEW reused AS SELECT photo_id FROM {reused} WHERE origin = 'reused'"
    )
    statuses = [
        str(folder / "*.parquet")
        for chunk in chunks
        for folder in pass_folders(chunk)
        if any(folder.glob("*.parquet"))
    ]
    source = (
        f"(SELECT photo_id, key, status, error_message, filename FROM "
        f"read_parquet({statuses!r}, filename=true))"
        if statuses
        else "(SELECT NULL::BIGINT AS photo_id, NULL AS key, NULL AS status, "
        "NULL AS error_message, NULL AS filename WHERE false)"
    )
    checks = [
        str(p) for chunk in chunks for p in sorted(chunk.glob(f"pass-*{chunk_images.CHECKED}"))
    ]
    checked = (
        f"(SELECT *, regexp_extract(filename, '(.*)/[^/]*$', 1) AS chunk "
        f"FROM read_parquet({checks!r}, filename=true))"
        if checks
        else f"(SELECT *, NULL AS chunk FROM {store.no_rows(chunk_images.CHECKED_COLUMNS)})"
    )
    con.execute(f"CREATE OR REPLACE VIEW checked AS SELECT * FROM {checked}")
    con.execute(f"""CREATE OR REPLACE VIEW attempts AS
                    SELECT s.photo_id, s.key, s.chunk, s.pass,
                           CASE WHEN s.status = 'success' AND c.good THEN 'success'
                                ELSE 'failed' END AS status,
                           CASE WHEN s.status <> 'success' THEN s.error_message
                                WHEN c.good IS NULL THEN {quote(NOT_CHECKED)}
                                WHEN NOT c.good THEN c.reason END AS reason,
                           CASE WHEN s.status <> 'success'
                                THEN regexp_matches(s.error_message, {quote(RETRYABLE)})
                                ELSE coalesce(c.retryable, true) END AS retryable
                    FROM (SELECT photo_id, key, status, error_message,
                                 regexp_extract(filename, '(.*)/pass-\\d+/[^/]*$', 1) AS chunk,
                                 regexp_extract(filename, '/pass-(\\d+)/[^/]*$', 1)::INTEGER AS pass
                          FROM {source}) AS s
                    LEFT JOIN checked AS c USING (chunk, pass, key)""")
    con.execute(f"""CREATE OR REPLACE VIEW outcomes AS
                    SELECT l.photo_id, l.url,
                           r.photo_id IS NOT NULL
                           OR coalesce(bool_or(a.status = 'success'), false) AS succeeded,
                           count(a.photo_id) AS attempts,
                           CASE WHEN r.photo_id IS NULL
                                 AND NOT coalesce(bool_or(a.status = 'success'), false)
                                THEN coalesce(arg_max(a.reason, a.pass), {quote(NO_STATUS)})
                           END AS reason,
                           coalesce(arg_max(a.retryable, a.pass), false) AS retryable
                    FROM listed AS l LEFT JOIN reused AS r USING (photo_id)
                    LEFT JOIN attempts AS a USING (photo_id)
                    GROUP BY l.photo_id, l.url, r.photo_id""")
    complete = [chunk for chunk in chunks if (chunk / contracts.CHUNK_IMAGES).is_file()]
    images = files(complete, contracts.CHUNK_IMAGES, store.MANIFEST_COLUMNS)
    con.execute(f"CREATE OR REPLACE VIEW successes AS SELECT * FROM {images}")


def files(chunks: list[Path], name: str, empty: tuple[tuple[str, str], ...]) -> str:
    """SQL: the Parquet file `name` of every chunk folder that has it, or no rows (`empty`'s
    columns)."""
    found = [str(chunk / name) for chunk in chunks if (chunk / name).is_file()]
    return f"read_parquet({found!r})" if found else store.no_rows(empty)


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
    """attempted, succeeded, success_rate and failed_by_reason of the `outcomes` view; the
    succeeded images by where they came from (`store`: reused from the image store, downloaded,
    or redownloaded: held, but not under this key), and the placeholders among the failures."""
    attempted, succeeded = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE succeeded) FROM outcomes"
    ).fetchone()
    failed = dict(
        con.execute(
            "SELECT reason, count(*) FROM outcomes WHERE NOT succeeded GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    origins = dict(con.execute("SELECT origin, count(*) FROM successes GROUP BY 1").fetchall())
    return {
        "attempted": attempted,
        "succeeded": succeeded,
        "success_rate": succeeded / attempted if attempted else 1.0,
        "failed_by_reason": failed,
        "store": {origin: origins.get(origin, 0) for origin in store.ORIGINS},
        "placeholder": sum(
            n for reason, n in failed.items() if reason.startswith(good_bytes.PLACEHOLDER)
        ),
    }


def download_chunk(
    subset: Path,
    chunk: int,
    out: Path,
    settings: dict | None = None,
    *,
    image_store: Path,
    previous_index: Path | None = None,
    as_of: str | None = None,
) -> dict:
    """Download chunk `chunk` of the subset into the folder `out`, reusing what the image store
    `image_store` holds by `previous_index` (the previous snapshot's index; None: no earlier one);
    `settings`: config.yaml's `images` section. A local folder is served as of the snapshot's date
    `as_of` (photo_server: the sample's photos as that month had them)."""
    settings = images_settings("images", settings)
    rewrite = settings["url_rewrite"]
    host = local_path(rewrite["to"]) if rewrite else None
    if host and not Path(host).is_dir():
        raise DownloadError(
            f"images.url_rewrite.to is {host}: no such folder (a URL, or a local copy of "
            f"the bucket)"
        )
    with serving(Path(host), as_of) if host else contextlib.nullcontext() as port:
        return _download_chunk(
            subset,
            chunk,
            out,
            settings,
            (host, f"http://127.0.0.1:{port}") if host else None,
            image_store,
            previous_index,
        )


def url_list(subset: Path, chunk: int, settings: dict) -> str:
    """SQL: the chunk's rows (photo_id, url, and the store's key: the rendition, the photo_url's
    file name and any resize, width, height), their start rewritten by images.url_rewrite."""
    rewrite, size = settings["url_rewrite"], settings["urls_per_job"]
    url = (
        f"replace(photo_url, {quote(rewrite['from'])}, {quote(rewrite['to'])})"
        if rewrite
        else "photo_url"
    )
    resized = (  # img2dataset re-encodes the image: another rendition
        ""
        if settings["resize_mode"] == "no"
        else f"|{settings['resize_mode']}@{settings['image_size']}"
    )
    return (
        f"SELECT photo_id, {url} AS url, regexp_extract(photo_url, '[^/]*$') || {quote(resized)} "
        f"AS rendition, width::INTEGER AS width, height::INTEGER AS height "
        f"FROM read_parquet({quote(subset)}) ORDER BY photo_id "
        f"LIMIT {size} OFFSET {chunk * size}"
    )


def _download_chunk(
    subset: Path,
    chunk: int,
    out: Path,
    settings: dict,
    served: tuple[str, str] | None,
    image_store: Path,
    previous_index: Path | None,
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
    if not (
        partial / chunk_images.REUSED
    ).exists():  # decided once: a resumed job keeps the verdicts
        placeholders = frozenset(settings["placeholder_sha256"])
        urls = f"read_parquet({quote(partial / contracts.CHUNK_URLS)})"
        store.lookup(con, urls, previous_index, image_store, placeholders)
        write_parquet(
            con, "SELECT * FROM looked_up ORDER BY photo_id", partial / chunk_images.REUSED
        )
    for number in range(1 + settings["retry_rounds"]):
        todo = fetch_list(con, partial, number, settings)
        if not con.execute(f"SELECT count(*) FROM read_parquet({quote(todo)})").fetchone()[0]:
            break
        fetch_pass(con, todo, partial / f"pass-{number}", settings, served)
        chunk_images.keep_pass(partial, number, image_store, settings)
    outcomes(con, [partial])
    chunk_images.write_manifest(con, partial)
    outcomes(con, [partial])  # now with the chunk's images
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


def fetch_list(con: duckdb.DuckDBPyConnection, partial: Path, number: int, settings: dict) -> Path:
    """Pass `number`'s list (photo_id, url), written once (a resumed pass keeps its list, as
    img2dataset's incremental mode counts on): pass 0, the images the store does not hold; a later
    pass, the images whose last failure was retryable, after waiting images.retry_wait_seconds
    (doubling)."""
    listed = partial / f"pass-{number}.urls.parquet"
    if listed.exists():
        return listed
    outcomes(con, [partial])
    if number == 0:
        fetched = "SELECT photo_id, url FROM outcomes WHERE NOT succeeded ORDER BY photo_id"
    else:
        fetched = (
            "SELECT photo_id, url FROM outcomes WHERE NOT succeeded AND retryable ORDER BY photo_id"
        )
        if con.execute(f"SELECT count(*) FROM ({fetched})").fetchone()[0]:
            time.sleep(settings["retry_wait_seconds"] * 2 ** (number - 1))
    write_parquet(con, fetched, listed)
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

    from workflow_scripts.images.fetch import installed  # img2dataset's too

    url = f"replace(url, {quote(served[0])}, {quote(served[1])})" if served else "url"
    listed = folder.with_name(
        folder.name + ".parquet"
    )  # what img2dataset reads: the served address for now
    con.execute(
        f"COPY (SELECT photo_id, {url} AS url FROM read_parquet({quote(todo)}) ORDER BY photo_id) "
        f"TO {quote(listed)} (FORMAT parquet)"
    )
    keep_bytes = settings["resize_mode"] == "no"  # then the image keeps its own bytes and format
    with installed(settings["max_seconds_per_image"]):  # a total time per image
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
    parser.add_argument(
        "--store", type=Path, required=True, help="the image store's folder (packs/, index/)"
    )
    parser.add_argument(
        "--previous-index",
        type=Path,
        help="the store's index after the previous snapshot (none: download every image)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with cli.running(args, inputs=[args.subset, args.previous_index]) as settings:
        report = download_chunk(
            args.subset,
            int(args.chunk),
            args.out,
            settings,
            image_store=args.store,
            previous_index=args.previous_index,
            as_of=args.date,
        )
    print(
        json.dumps(
            {
                k: report[k]
                for k in ("attempted", "succeeded", "failed_by_reason", "store", "passes")
            }
        ),
        file=sys.stderr,
    )
    fetched = report["store"]["downloaded"] + report["store"]["redownloaded"]
    print(f"downloaded {throughput(fetched, [], time.perf_counter() - started)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
