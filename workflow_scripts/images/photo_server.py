"""A local folder laid out like the bucket, served over HTTP while img2dataset downloads from it:
each file at its path, and the members of the folder's photo pack (contracts.SAMPLE_PHOTOS: the
generated sample's photos) at their names, photos/<id>/<size>.<ext>, where the bucket has them.
A file wins over a pack member of the same name. With --as-of <date>, the photos as that snapshot
served them (contracts.sample_photos_as_of: the sample's photos rotated or replaced since) win
over photos.tar; with --log, each request is appended to a file as `<path> <status>`.

    python -m workflow_scripts.images.photo_server --port 8000 --folder data/sample/bucket \\
        [--as-of 2024-08-27] [--log requests.log]

serving() runs it in a process of its own for as long as a download runs (img2dataset forks
workers: a server thread in the downloading process would be copied into them).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import socket
import subprocess
import sys
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from workflow_scripts.common import contracts
from workflow_scripts.common.cli import StageError
from workflow_scripts.common.tars import members


class ServerError(StageError):
    """The local server did not start; the message names the folder and port."""


class Handler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler over the folder, with the packs' members where no file is."""

    def __init__(self, *args, pack: dict[str, tuple[int, int, int]], log: Path | None, **kwargs):
        self.pack = pack  # name -> (its open pack's descriptor, offset, size)
        self.log = log
        super().__init__(*args, **kwargs)

    def send_head(self):
        key = unquote(urlsplit(self.path).path).lstrip("/")
        if key not in self.pack or os.path.isfile(self.translate_path(self.path)):
            return super().send_head()
        descriptor, offset, size = self.pack[key]
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(key))
        self.send_header("Content-Length", str(size))
        self.end_headers()
        return io.BytesIO(os.pread(descriptor, size, offset))  # pread: threads share the file

    def log_request(self, code="-", size="-") -> None:
        if self.log:  # one write per line, appended: whole lines from every thread
            with open(self.log, "a") as log:
                log.write(f"{unquote(urlsplit(self.path).path)} {int(code)}\n")

    def log_message(self, *args) -> None:  # quiet: img2dataset's own status files say it all
        pass


def packed(folder: Path, as_of: str | None) -> dict[str, tuple[int, int, int]]:
    """Every member of the folder's photo packs: photos.tar, then the one as of `as_of` over it."""
    names = [contracts.SAMPLE_PHOTOS]
    if as_of:
        names.append(contracts.sample_photos_as_of(as_of))
    found = {}
    for name in names:
        if (folder / name).is_file():
            descriptor = os.open(folder / name, os.O_RDONLY)
            for key, (offset, size) in members(folder / name).items():
                found[key] = (descriptor, offset, size)
    return found


def serve(folder: Path, port: int, as_of: str | None = None, log: Path | None = None) -> None:
    """Serve the folder on 127.0.0.1:port until killed."""
    handler = functools.partial(Handler, pack=packed(folder, as_of), log=log, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        server.serve_forever()


@contextlib.contextmanager
def serving(folder: Path, as_of: str | None = None, log: Path | None = None):
    """Serve a folder over HTTP on a free local port, from a process of its own (as serve() does).
    Yields the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", __spec__.name, "--port", str(port), "--folder", str(folder)]
        + (["--as-of", as_of] if as_of else [])
        + (["--log", str(log)] if log else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(400):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if server.poll() is not None:
                raise ServerError(f"the local server of {folder} exited ({server.returncode})")
            time.sleep(0.05)
        else:
            raise ServerError(f"the local server of {folder} did not start on port {port}")
        yield port
    finally:
        server.terminate()
        server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--folder", type=Path, required=True, help="the folder to serve")
    parser.add_argument("--as-of", help="a snapshot's date: its photos win (sample_photos_as_of)")
    parser.add_argument(
        "--log", type=Path, help="a file to append `<path> <status>` to, per request"
    )
    args = parser.parse_args(argv)
    serve(args.folder, args.port, args.as_of, args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
