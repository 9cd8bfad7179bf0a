"""Fetch one monthly iNaturalist Open Data snapshot and the taxonomy archive, verified and archived.

A dated snapshot comes from its bundle metadata/inaturalist-open-data-YYYYMMDD.tar.gz; `latest`
from the bucket-root tables, its date resolved and recorded. Writes <snapshots-dir>/<date>/raw/
with photos/observations/taxa/observers .csv.gz, the taxonomy DwC-A and manifest.json.
Downloads stream in chunks (constant memory), resume from <date>/.partial/ after an
interruption, retry transient failures with exponential backoff (or the server's Retry-After, up to
fetch.max_retry_after_seconds: a longer one stops the fetch), and are verified (size, MD5
ETag where the source has one, gzip/tar/zip read to the end, table headers). raw/ appears only
when everything checked out. Settings: config.yaml's `fetch` section
(workflow_scripts.common.config).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import shutil
import sys
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from workflow_scripts.common import contracts, inat_format
from workflow_scripts.common.cli import StageError
from workflow_scripts.common.config import settings as fetch_settings
from workflow_scripts.common.files import HashingWriter, building, write_json
from workflow_scripts.fetch.storage import (
    ChangedError,
    ObjectInfo,
    Source,
    TransientError,
    split_location,
)

BUNDLE_PREFIX = "metadata/inaturalist-open-data-"
LATEST_BUNDLE = f"{BUNDLE_PREFIX}latest.tar.gz"
DATED_BUNDLE = re.compile(re.escape(BUNDLE_PREFIX) + r"(\d{4})(\d{2})(\d{2})\.tar\.gz\Z")


class FetchError(StageError):
    """A fetch that cannot complete; the message says what to do."""


@dataclass
class Resolution:
    date: str
    method: str
    detail: str


@dataclass
class Download:
    path: Path
    info: ObjectInfo
    sha256: str
    md5: str

    def record(self) -> dict:
        return {
            "key": self.info.key,
            "size": self.info.size,
            "etag": self.info.etag,
            "sha256": self.sha256,
            "md5": self.md5,
        }


# -- which snapshot -----------------------------------------------------------------------------
def available_dates(source: Source) -> list[str]:
    dates = []
    for key in source.list(BUNDLE_PREFIX):
        match = DATED_BUNDLE.match(key)
        if match:
            dates.append("-".join(match.groups()))
    return sorted(dates)


def bundle_key(day: str) -> str:
    return f"{BUNDLE_PREFIX}{day.replace('-', '')}.tar.gz"


def wait_or_give_up(
    what: str, exc: Exception, attempt: int, retries: int, backoff: float, max_retry_after: float
) -> None:
    """Sleep before retry number `attempt` (exponential backoff, or longer if the server's
    Retry-After asks for it), or raise once retries are spent, or at once if the server asks for a
    longer wait than `max_retry_after` seconds (fetch.max_retry_after_seconds)."""
    if attempt > retries:
        raise FetchError(
            f"{what}: gave up after {retries} retries: {exc}. "
            "Run again later; a partial download resumes where it stopped."
        ) from exc
    retry_after = getattr(
        exc, "retry_after", None
    )  # finite and >= 0, or None (storage._retry_after)
    if retry_after is not None and retry_after > max_retry_after:
        raise FetchError(
            f"{what}: {exc}: the server asks to wait {math.ceil(retry_after)} s before retrying "
            f"(Retry-After), longer than fetch.max_retry_after_seconds ({max_retry_after:g} s). "
            "Run again later (a partial download resumes where it stopped), or raise "
            "fetch.max_retry_after_seconds in config.yaml."
        ) from exc
    delay = max(min(backoff * 2 ** (attempt - 1), 60), retry_after or 0)
    print(f"fetch: {what}: {exc}; retry {attempt}/{retries} in {delay:.1f}s", file=sys.stderr)
    time.sleep(delay)


def retried(call: Callable, what: str, retries: int, backoff: float, max_retry_after: float):
    attempt = 0
    while True:
        try:
            return call()
        except TransientError as exc:
            attempt += 1
            wait_or_give_up(what, exc, attempt, retries, backoff, max_retry_after)


def resolve(source: Source, spec: str, settings: dict | None = None) -> Resolution:
    """A date 'YYYY-MM-DD' (must have a bundle) or 'latest' (the date the root files belong to)."""
    settings = fetch_settings("fetch", settings)
    policy = settings["retries"], settings["backoff_seconds"], settings["max_retry_after_seconds"]

    def head(key: str) -> ObjectInfo:
        return retried(lambda: source.head(key), f"{source.description}: {key}", *policy)

    dates = retried(lambda: available_dates(source), f"{source.description}: listing", *policy)
    if not dates:
        raise FetchError(
            f"{source.description}: no monthly bundles under {BUNDLE_PREFIX}*: is this the "
            f"right source?"
        )
    if spec != "latest":
        if spec not in dates:
            raise FetchError(
                f"{source.description}: no bundle for snapshot {spec}. Available dates: "
                f"{', '.join(dates)}. Set one of them (or 'latest') in config.yaml."
            )
        return Resolution(spec, "dated-bundle", f"{bundle_key(spec)} exists")
    try:
        alias = head(LATEST_BUNDLE)
    except FileNotFoundError:
        alias = None
    if alias is not None:
        for day in reversed(dates):
            dated = head(bundle_key(day))
            if dated.size == alias.size and (not alias.etag or dated.etag == alias.etag):
                return Resolution(
                    day,
                    "latest-alias",
                    f"{LATEST_BUNDLE} matches {dated.key} (size"
                    + (", ETag)" if alias.etag else ")"),
                )
    return Resolution(
        dates[-1],
        "newest-dated-bundle",
        f"no {LATEST_BUNDLE} identical to a dated bundle; took the newest dated bundle",
    )


# -- resumable, verified download -----------------------------------------------------------------
def download(
    source: Source,
    key: str,
    partial_dir: Path,
    retries: int,
    backoff: float,
    max_retry_after: float,
) -> Download:
    """Stream `key` into partial_dir, resuming a previous partial file when it is the same object.

    Retries count failures in a row: a retry that moved the transfer forward starts the count
    again, so a long download survives many separate hiccups. If the object changes mid-way
    (new ETag or size), the transfer starts over on the new object. A server asking (Retry-After)
    for a longer wait than `max_retry_after` seconds stops it.
    """
    what = f"{source.description}: {key}"
    policy = retries, backoff, max_retry_after
    partial_dir.mkdir(parents=True, exist_ok=True)
    part = partial_dir / (key.replace("/", "__") + ".part")
    state = part.with_name(part.name + ".json")

    def identity(info: ObjectInfo) -> str:
        return json.dumps({"key": key, "size": info.size, "etag": info.etag})

    info = retried(lambda: source.head(key), what, *policy)
    try:
        resumable = part.exists() and state.read_text() == identity(info)
    except OSError:
        resumable = False
    if not resumable:  # no partial file, or one of another version of the object
        part.unlink(missing_ok=True)
        state.write_text(identity(info))
    with (
        open(part, "ab+") as handle,
        tqdm(
            total=info.size,
            unit="B",
            unit_scale=True,
            desc=key,
            file=sys.stderr,
            mininterval=1,
            disable=None,
        ) as bar,
    ):
        sha256, md5 = hashlib.sha256(), hashlib.md5()
        handle.seek(0)
        while chunk := handle.read(1 << 20):  # resuming: hash what an earlier run left, once
            sha256.update(chunk)
            md5.update(chunk)
        offset = handle.tell()
        bar.update(offset)
        attempt = 0
        while (
            offset < info.size
        ):  # a complete partial file (from an earlier run) goes to verification
            resumed_at = offset
            try:
                for chunk in source.read(key, offset, info.etag):
                    handle.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    offset += len(chunk)
                    bar.update(len(chunk))
                if offset > info.size:
                    raise ChangedError(f"got {offset} bytes, expected {info.size}")
                if offset < info.size:
                    raise TransientError(f"connection closed at byte {offset} of {info.size}")
            except TransientError as exc:
                attempt = 1 if offset > resumed_at else attempt + 1  # progress resets the count
                wait_or_give_up(what, exc, attempt, *policy)
            except ChangedError as exc:
                attempt += 1
                wait_or_give_up(what, exc, attempt, *policy)
                info = retried(lambda: source.head(key), what, *policy)
                handle.truncate(0)
                state.write_text(identity(info))
                sha256, md5, offset = hashlib.sha256(), hashlib.md5(), 0
                bar.reset(total=info.size)
    result = Download(part, info, sha256.hexdigest(), md5.hexdigest())
    if (
        source.md5_etags
        and info.etag
        and re.fullmatch(r"[0-9a-f]{32}", info.etag)
        and info.etag != result.md5
    ):
        discard(result)
        raise FetchError(
            f"{what}: MD5 {result.md5} does not match ETag {info.etag}; "
            "the partial file was removed, run again"
        )
    return result


def discard(item: Download) -> None:
    item.path.unlink(missing_ok=True)
    item.path.with_name(item.path.name + ".json").unlink(missing_ok=True)


# -- content checks -------------------------------------------------------------------------------
def check_table_stream(table: str, chunks: Iterator[bytes], where: str, sink=None) -> dict:
    """Header check, line count and trailing newline, streaming; copies the bytes to `sink`."""
    head, rows, last = b"", 0, b""
    for chunk in chunks:
        if sink is not None:
            sink.write(chunk)
        if len(head) < 4096 and b"\n" not in head:
            head += chunk[:4096]
        rows += chunk.count(b"\n")
        last = chunk[-1:] or last
    if not head:
        raise FetchError(f"{where}: empty file")
    try:
        columns = inat_format.check_header(table, head.split(b"\n", 1)[0].decode("utf-8"), where)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FetchError(str(exc)) from exc
    if last != b"\n":
        raise FetchError(f"{where}: does not end with a line terminator (truncated?)")
    return {"rows": rows - 1, "columns": list(columns)}


def read_chunks(handle, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk


def unpack_bundle(item: Download, day: str, out: Path, gzip_level: int) -> dict[str, dict]:
    """Stream the tar.gz once: every table it holds goes to out/<table>.csv.gz, checked."""
    folder = f"inaturalist-open-data-{day.replace('-', '')}/"
    files: dict[str, dict] = {}
    skipped = []
    corrupt = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)
    try:
        # GzipFile, not tarfile's own gzip reader: it checks the CRC and length at the end
        with (
            gzip.GzipFile(item.path, "rb") as unzipped,
            tarfile.open(fileobj=unzipped, mode="r|") as tar,
        ):
            for member in tar:
                if not member.isfile():
                    continue
                if not member.name.startswith(folder):
                    raise FetchError(
                        f"{item.info.key}: member {member.name} is not inside {folder}: "
                        "the bundle does not belong to that date"
                    )
                table = member.name[len(folder) :].removesuffix(".csv")
                if table not in inat_format.TABLES:
                    skipped.append(member.name)
                    continue
                target = out / f"{table}.csv.gz"
                with open(target, "wb") as raw:
                    hashed = HashingWriter(raw)
                    with gzip.GzipFile(
                        filename="", mode="wb", fileobj=hashed, mtime=0, compresslevel=gzip_level
                    ) as sink:
                        stats = check_table_stream(
                            table,
                            read_chunks(tar.extractfile(member)),
                            f"{item.info.key}:{member.name}",
                            sink,
                        )
                files[target.name] = {
                    "from": f"{item.info.key}:{member.name}",
                    **stats,
                    "sha256": hashed.sha256.hexdigest(),
                    "size": hashed.size,
                }
            for _ in read_chunks(unzipped):  # past the tar's end marker to the gzip trailer
                pass
    except corrupt as exc:
        raise FetchError(
            f"{item.info.key}: truncated or corrupt archive ({exc}); "
            "the download was removed: fetch again, or pick another date."
        ) from exc
    missing = [t for t in inat_format.REQUIRED_TABLES if f"{t}.csv.gz" not in files]
    if missing:
        raise FetchError(
            f"{item.info.key}: bundle has no {', '.join(missing)} table(s) under {folder}"
        )
    if skipped:
        files["_skipped_members"] = skipped
    return files


def check_gzip_table(item: Download, table: str) -> dict:
    try:
        with gzip.open(item.path, "rb") as handle:
            stats = check_table_stream(table, read_chunks(handle), item.info.key)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise FetchError(
            f"{item.info.key}: truncated or corrupt gzip ({exc}); the download was removed: "
            "fetch again."
        ) from exc
    return {"from": item.info.key, **stats, "sha256": item.sha256, "size": item.info.size}


def check_dwca(path: Path, where: str) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = sorted(archive.namelist())
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as exc:
        raise FetchError(
            f"{where}: truncated or corrupt zip ({exc}); the download was removed: fetch again."
        ) from exc
    if bad:
        raise FetchError(
            f"{where}: member {bad} fails its CRC check (corrupt zip); the download was removed: "
            "fetch again."
        )
    vernacular = [n for n in names if re.fullmatch(r"VernacularNames-[\w-]+\.csv", n)]
    if "taxa.csv" not in names or not vernacular:
        raise FetchError(f"{where}: expected taxa.csv and VernacularNames-*.csv, found {names}")
    return {"members": names}


# -- the stage ----------------------------------------------------------------------------------
def fetch(
    source: Source,
    spec: str,
    out: Path,
    settings: dict | None = None,
    expect_date: str | None = None,
) -> Path:
    """Fetch snapshot `spec` (a date or 'latest') into the folder `out` ("{date}" in it is the date
    the snapshot resolves to); interrupted downloads wait in .partial/ beside it. Returns the
    folder."""
    settings = fetch_settings("fetch", settings)
    resolution = resolve(source, spec, settings)
    if expect_date and resolution.date != expect_date:
        raise FetchError(
            f"snapshot '{spec}' now resolves to {resolution.date}, not {expect_date}: "
            "the source moved on; rerun the workflow so it plans for the new date"
        )
    final = Path(str(out).replace("{date}", resolution.date))
    partial = final.with_name(".partial")
    with building(final) as staging:  # never leaves a half-built snapshot behind
        manifest = _fetch_into(source, spec, resolution, staging, partial, settings)
        write_json(staging / contracts.MANIFEST, manifest)
    shutil.rmtree(partial, ignore_errors=True)
    return final


def _fetch_into(
    source: Source, spec: str, resolution: Resolution, staging: Path, partial: Path, settings: dict
) -> dict:
    downloads, files, kept = (
        [],
        {},
        {},
    )  # kept: file name in raw/ -> verified download to move there
    policy = settings["retries"], settings["backoff_seconds"], settings["max_retry_after_seconds"]

    def get_checked(src: Source, key: str, check: Callable[[Download], dict]) -> dict:
        item = download(src, key, partial, *policy)
        try:
            result = check(item)
        except FetchError:
            discard(item)  # a corrupt download must not be resumed next time
            raise
        downloads.append(item)
        return result

    if spec == "latest":
        for table in inat_format.TABLES:
            name = f"{table}.csv.gz"
            try:
                files[name] = get_checked(
                    source, name, lambda item, t=table: check_gzip_table(item, t)
                )
            except FileNotFoundError:
                if table in inat_format.REQUIRED_TABLES:
                    raise
                continue
            kept[name] = downloads[-1]
        # the root tables are overwritten monthly: make sure none changed while we fetched the
        # others
        for item in kept.values():
            now = retried(lambda key=item.info.key: source.head(key), item.info.key, *policy)
            if (now.size, now.etag) != (item.info.size, item.info.etag):
                raise FetchError(
                    f"{source.description}: {item.info.key} changed while the snapshot was being "
                    "fetched (a monthly update?): run again to fetch a consistent one"
                )
    else:
        files.update(
            get_checked(
                source,
                bundle_key(resolution.date),
                lambda item: unpack_bundle(item, resolution.date, staging, settings["gzip_level"]),
            )
        )
    taxonomy_source, taxonomy_key = split_location(settings["taxonomy"], source, settings)
    files[contracts.TAXONOMY_ARCHIVE] = get_checked(
        taxonomy_source,
        taxonomy_key,
        lambda item: {
            "from": f"{taxonomy_source.description}:{taxonomy_key}",
            **check_dwca(item.path, taxonomy_key),
            "sha256": item.sha256,
            "size": item.info.size,
        },
    )
    kept[contracts.TAXONOMY_ARCHIVE] = downloads[-1]
    for name, item in kept.items():  # verified: move, don't copy (a photos table is ~20 GB)
        item.path.replace(staging / name)
    return {
        "snapshot": resolution.date,
        "requested": spec,
        "resolution": {"method": resolution.method, "detail": resolution.detail},
        "source": source.description,
        "objects": [d.record() for d in downloads],
        "files": dict(sorted(files.items())),
        "notes": [
            "The taxonomy archive is not dated: it is the version current when this snapshot "
            "was fetched."
        ],
    }
