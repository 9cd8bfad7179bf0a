"""Small file helpers shared by the stages: atomic writes and replacement, hashing while writing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from pathlib import Path


def replace_dir(staging: Path, final: Path) -> None:
    """Put a fully built `staging` folder at `final`: at every moment `final` is whole or absent."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write via a temporary name: `path` is whole or absent."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_json(path: Path, value) -> None:
    """Reports and manifests: sorted keys, indented, a final newline (the same bytes on every
    run)."""
    write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def building(final: Path):
    """A fresh `<final>.tmp` folder to write into; it replaces `final` if the block succeeds and is
    removed if it fails, so a failed run leaves no output at all."""
    staging = final.with_name(final.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_dir(staging, final)


def throughput(items: int, files: list[Path], seconds: float) -> str:
    """One line for the end of a long step that wrote `items` images into `files`: how much, how
    long, how fast."""
    size = sum(p.stat().st_size for p in files)
    seconds = max(seconds, 1e-9)
    return (
        f"{items:,} images, {size / 1e6:,.1f} MB in {seconds:,.1f} s: "
        f"{items / seconds:,.0f} images/s, {size / 1e6 / seconds:,.1f} MB/s"
    )


class HashingWriter:
    """A binary file wrapper that hashes what goes through it (to avoid reading it back)."""

    def __init__(self, handle):
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()
