"""Images in tar files, as the shards, the exports and the sample bucket's photo pack hold them:
read an image's bytes where they are (a tar member's offset and size, or a whole file), write tars
whose bytes depend only on their files (webdataset samples for shards and exports, plain packs for
the photos), find a pack's members, and tell an image's format from its first bytes."""

from __future__ import annotations

import contextlib
import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

from workflow_scripts.common.cli import StageError

SIGNATURES = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)


class ImageFormatError(StageError):
    """Bytes that are not an image the shards can hold; the message names the file."""


def image_format(data: bytes, where: str) -> str:
    """An image's extension from its first bytes (img2dataset names every image .jpg)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for signature, extension in SIGNATURES:
        if data.startswith(signature):
            return extension
    raise ImageFormatError(
        f"{where}: not a JPEG, PNG, GIF or WebP image (first bytes {data[:12]!r})"
    )


def read_images(locations: list[tuple[str, int, int]]):
    """The bytes at each (file, offset, size), in order, each file opened once; a negative offset
    reads the whole file (an image file of its own)."""
    files = {}
    try:
        for tar, offset, size in locations:
            if offset < 0:
                yield tar, Path(tar).read_bytes()
                continue
            if tar not in files:
                files[tar] = open(tar, "rb")
            files[tar].seek(offset)
            yield tar, files[tar].read(size)
    finally:
        for handle in files.values():
            handle.close()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int, owner: str) -> None:
    """One member whose header holds its name, size, mode and owner's names alone: time 0, ids 0."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, mode, owner, owner
    tar.addfile(info, io.BytesIO(data))


class SampleWriter:
    """Writes webdataset samples: {"__key__": key, extension: bytes or text, ...} becomes the files
    <key>.<extension>, in extension order (other keys starting with "_" left out)."""

    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar

    def write(self, sample: dict) -> None:
        for extension in sorted(name for name in sample if not name.startswith("_")):
            data = sample[extension]
            name = f"{sample['__key__']}.{extension}"
            _add(self.tar, name, data.encode() if isinstance(data, str) else data, 0o444, "bigdata")


@contextlib.contextmanager
def tar_writer(path: Path) -> Iterator[SampleWriter]:
    """A webdataset tar being written at `path`, whose bytes depend only on its samples: ustar
    headers with time 0, mode 0444 and owner bigdata, as webdataset's TarWriter(mtime=0) wrote the
    shards before (tarfile alone: importing webdataset brings torch, seconds in each shard job)."""
    with (
        open(path, "wb") as handle,
        tarfile.open(fileobj=handle, mode="w|", format=tarfile.USTAR_FORMAT) as tar,
    ):
        yield SampleWriter(tar)


@contextlib.contextmanager
def packing(path: Path) -> Iterator[Callable[[str, bytes], None]]:
    """A plain tar being written at `path`; yields add(name, data). Its bytes depend only on the
    files added, in the order added: every header has time 0, owner 0 (no names) and mode 0644."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        yield lambda name, data: _add(tar, name, data, 0o644, "")


def members(path: Path) -> dict[str, tuple[int, int]]:
    """{name: (offset, size)} of a tar's files: where read_images() finds each one's bytes."""
    with tarfile.open(path) as tar:
        return {info.name: (info.offset_data, info.size) for info in tar if info.isfile()}
