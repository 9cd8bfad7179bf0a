"""Shared fixtures: the generated sample, a real local S3 server (moto), a faulty proxy, a photo
server over HTTP."""

from __future__ import annotations

import fcntl
import http.client
import io
import json
import os
import shutil
import socket
import tarfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image

from tests.project_copy import run, small_project
from workflow_scripts.common import contracts
from workflow_scripts.common.config import load_config
from workflow_scripts.common.tars import members, read_images
from workflow_scripts.curate.stage import curate
from workflow_scripts.images.photo_server import serving
from workflow_scripts.sample.bucket import generate
from workflow_scripts.subsets.build import build

REPO = Path(__file__).resolve().parent.parent
REAL = (
    REPO / "tests" / "fixtures" / "real"
)  # real iNaturalist samples nobody here wrote (README there)
MONTHS = [date(2024, 8, 27), date(2024, 9, 27)]
BUCKET = "inaturalist-open-data"

# moto needs some credentials to sign the uploads; the pipeline itself reads anonymously
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The sample's photos take minutes to draw: a test that needs them is slow (`make check` leaves
    it out)."""
    for item in items:
        if "sample" in item.fixturenames:
            item.add_marker(pytest.mark.slow)
    # The SLURM run waits on the cluster most of its time: first, so that the rest runs beside it
    # (`make test-slurm` keeps this order: --no-loadscope-reorder).
    items.sort(key=lambda item: item.get_closest_marker("slurm") is None)


def once_per_run(name: str, build: Callable[[Path], None], tmp_path_factory, worker_id) -> Path:
    """A folder that `build` fills, made once per test run: under pytest-xdist the first worker that
    needs it builds it in the run's shared temporary folder while the others wait, then all read
    it."""
    if worker_id == "master":  # no workers: a session fixture runs once anyway
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    folder = tmp_path_factory.getbasetemp().parent / name
    done = folder.with_name(f"{name}.done")
    with open(folder.with_name(f"{name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def sample(tmp_path_factory, worker_id) -> Path:
    """The default sample (scale 1, with images), generated once per test run: the bucket, the web
    export with life stages and planted.json."""

    def draw(folder: Path) -> None:
        generate(folder / "sample", workers=2)  # the schema's defaults: config.yaml's sample

    return once_per_run("sample", draw, tmp_path_factory, worker_id) / "sample"


@pytest.fixture(scope="session")
def sample_metadata(tmp_path_factory) -> Path:
    """The default sample without its photo pack, in seconds rather than minutes: every other file
    the same bytes (test_sample_snapshot checks it), for the tests that read no photo."""
    out = tmp_path_factory.mktemp("sample_metadata") / "sample"
    generate(out, with_images=False)
    return out


@pytest.fixture(scope="session")
def mirror(sample_metadata) -> Path:
    """The sample's bucket: its tables, monthly bundles and taxonomy (no photos: `photo_bucket`)."""
    return sample_metadata / contracts.SAMPLE_BUCKET


@pytest.fixture(scope="session")
def photo_bucket(sample) -> Path:
    """The sample's bucket with its photo pack."""
    return sample / contracts.SAMPLE_BUCKET


@pytest.fixture(scope="session")
def photos(photo_bucket) -> dict[str, bytes]:
    """The sample bucket's photos by their key (photos/<id>/medium.<ext>), from its photo pack."""
    pack = photo_bucket / contracts.SAMPLE_PHOTOS
    found = members(pack)
    read = read_images([(str(pack), offset, size) for offset, size in found.values()])
    return {key: data for key, (_, data) in zip(found, read)}


@pytest.fixture(scope="session")
def planted(sample_metadata) -> dict:
    """What the generator planted (planted.json's `planted`)."""
    return json.loads((sample_metadata / contracts.SAMPLE_PLANTED).read_text())["planted"]


@pytest.fixture(scope="session")
def sample_months(sample_metadata, mirror, tmp_path_factory) -> Path:
    """Both sample months as the pipeline lays them out: <root>/<date>/raw (the bundle's tables),
    curated/ and subsets/ (config.yaml's, the genus-sampled subset among them)."""
    subsets = load_config(REPO / "config.yaml")["subsets"]
    root = tmp_path_factory.mktemp("months")
    for day in MONTHS:
        bundle = f"inaturalist-open-data-{day:%Y%m%d}"
        with tarfile.open(mirror / "metadata" / f"{bundle}.tar.gz") as tar:
            tar.extractall(root, filter="data")
        snapshot = root / day.isoformat()
        snapshot.mkdir()
        (root / bundle).rename(snapshot / "raw")
        curate(snapshot / "raw", snapshot / "curated", taxonomy=mirror / contracts.TAXONOMY_ARCHIVE)
        build(
            snapshot / "curated" / contracts.CURATED_TABLE,
            snapshot / "subsets",
            {
                **subsets,
                "lifestages": {
                    **subsets["lifestages"],
                    "export": str(sample_metadata / contracts.SAMPLE_LIFESTAGES),
                },
            },
        )
    return root


@pytest.fixture(scope="session")
def demo_model(sample_months, photo_bucket, tmp_path_factory, worker_id) -> tuple[Path, Path]:
    """The demo's path on the sample's newer month after its subsets: Train's images downloaded from
    the sample's bucket and sharded, the tiny-cpu recipe trained as configured (once per test run).
    Returns a snapshot folder (subsets/, shards/train/) and the checkpoint."""
    from tests.images import download, shard
    from workflow_scripts.train import train

    def demo(folder: Path) -> None:
        config = load_config(REPO / "config.yaml")
        snapshot = folder / MONTHS[-1].isoformat()
        shutil.copytree(
            sample_months / MONTHS[-1].isoformat() / "subsets", contracts.subsets(str(snapshot))
        )
        table, shards = (
            Path(contracts.subset_table(str(snapshot), "train")),
            Path(contracts.shards(str(snapshot), "train")),
        )
        # the bucket's folder as the photos' host, as config.yaml has it (served over HTTP while
        # downloading)
        download(
            table,
            snapshot / "images",
            {"url_rewrite": {**config["images"]["url_rewrite"], "to": str(photo_bucket)}},
        )
        shard(table, snapshot / "images", shards, processes=2)
        train(shards, folder / "tiny-cpu", "tiny-cpu", config["train"], threads=2)

    folder = once_per_run("demo", demo, tmp_path_factory, worker_id)
    return folder / MONTHS[-1].isoformat(), folder / "tiny-cpu" / contracts.CHECKPOINT


@pytest.fixture(scope="session")
def small_build(tmp_path_factory, worker_id) -> tuple[Path, str]:
    """The project on one month of a small sample (tests/project_copy.py: small) built by `dvc
    repro` once per test run, and what the repro printed. Read only: test_dvc copies it to edit,
    push, pull and rebuild; test_slurm compares a run on SLURM with it."""

    def repro(folder: Path) -> None:
        small_project(REPO, folder / "repo")
        (folder / "repro.log").write_text(run("dvc", "repro", cwd=folder / "repo"))

    folder = once_per_run("small_build", repro, tmp_path_factory, worker_id)
    return folder / "repo", (folder / "repro.log").read_text()


@pytest.fixture(scope="session")
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def upload_mirror(
    endpoint: str, mirror: Path, bucket: str, replace: dict[str, bytes] | None = None
) -> None:
    """Put the mirror's metadata objects (not the images) into a fresh bucket, as iNat does."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(
        Bucket=bucket, ACL="public-read"
    )  # anonymous access, as the real bucket allows
    for path in sorted(mirror.rglob("*")):
        key = path.relative_to(mirror).as_posix()
        if path.is_dir() or contracts.is_sample_photos(key):
            continue
        body = (replace or {}).get(key, path.read_bytes())
        extra = {"ContentEncoding": "gzip"} if key.endswith(".csv.gz") else {}
        client.put_object(Bucket=bucket, Key=key, Body=body, ACL="public-read", **extra)


@pytest.fixture
def bucket(s3_server, mirror, request) -> str:
    """A bucket of its own per test (named after the test) holding the sample's metadata."""
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip(
        "-"
    )
    upload_mirror(s3_server, mirror, name)
    return name


class FaultyProxy:
    """An HTTP proxy in front of the S3 server that can fail, throttle, cut or corrupt responses.

    faults: {path substring: {"fail": n, "throttle": bytes_per_second, "cut_after": n,
                              "then": callable, "corrupt": True, "methods": ("GET",) by default}}
    log: (method, path, Range header, status) of every request it answered.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream.removeprefix("http://")
        self.faults: dict[str, dict] = {}
        self.log: list[tuple[str, str, str | None, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                proxy.forward(self)

            def do_GET(self):
                proxy.forward(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def fault_for(self, method: str, path: str) -> dict:
        return next(
            (
                f
                for key, f in self.faults.items()
                if key in path and method in f.get("methods", ("GET",))
            ),
            {},
        )

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        fault = self.fault_for(handler.command, handler.path)
        if fault.get("fail", 0) > 0:
            fault["fail"] -= 1
            self.log.append((handler.command, handler.path, handler.headers.get("Range"), 500))
            handler.send_response(500)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        connection = http.client.HTTPConnection(self.upstream, timeout=30)
        headers = {k: v for k, v in handler.headers.items() if k.lower() != "host"}
        connection.request(handler.command, handler.path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        self.log.append(
            (handler.command, handler.path, handler.headers.get("Range"), response.status)
        )
        handler.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "server", "date"):
                handler.send_header(name, value)
        handler.end_headers()
        if handler.command == "HEAD":
            return
        if fault.get("corrupt"):
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        if "cut_after" in fault:
            handler.wfile.write(body[: fault.pop("cut_after")])
            handler.close_connection = True
            fault.pop("then", lambda: None)()  # e.g. replace the object while the client is away
            return
        rate = fault.get("throttle")
        step = 16 * 1024
        for start in range(0, len(body), step):
            handler.wfile.write(body[start : start + step])
            if rate:
                threading.Event().wait(step / rate)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def proxy(s3_server):
    faulty = FaultyProxy(s3_server)
    yield faulty
    faulty.close()


@pytest.fixture
def photo_server(tmp_path):
    with served_photos(tmp_path) as served:
        yield served


@contextmanager
def served_photos(root: Path) -> Iterator[tuple[str, str, Path]]:
    """Photos 1-8 written under root/mirror and served over HTTP (photo_server.serving), all at
    medium.jpg, photo 8 a PNG; a second address accepts connections and never answers. Yields both
    addresses and the folder."""
    for photo_id in range(1, 9):
        folder = root / "mirror" / "photos" / str(photo_id)
        folder.mkdir(parents=True)
        data = io.BytesIO()
        Image.new("RGB", (40 + photo_id, 30), (photo_id * 20, 80, 120)).save(
            data, "PNG" if photo_id == 8 else "JPEG"
        )
        (folder / "medium.jpg").write_bytes(data.getvalue())
    with serving(root / "mirror") as port, socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        yield (
            f"http://127.0.0.1:{port}",
            f"http://127.0.0.1:{silent.getsockname()[1]}",
            root / "mirror",
        )
