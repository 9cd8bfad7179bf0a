"""Provenance: what made an output, written beside it (contracts.provenance) rather than into it,
so that an output's bytes depend only on its data inputs and settings.

A record holds the stage (the module run), the snapshot, the settings and their sha256, the code
(sha256 of every file of the stage's import closure and data files, and of all of them together),
each input's checksum (a file: sha256 of its bytes; a folder: sha256 of its listing of names and
sizes, since hashing a folder of shards would take hours at full size) and the versions of Python
and of every third-party distribution the code imports. It holds no time and no host: the same
run gives the same record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from workflow_scripts.common import closure
from workflow_scripts.common.files import write_json

CHUNK = 1 << 20


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum(path: Path) -> dict:
    if path.is_file():
        return {"sha256": sha256(path), "bytes": path.stat().st_size}
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = "".join(f"{p.relative_to(path).as_posix()}\t{p.stat().st_size}\n" for p in files)
    return {
        "listing_sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
    }


def settings_sha256(settings) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def record(module: str, settings, inputs: list[Path], snapshot: str | None = None) -> dict:
    code = closure.code_files([module])
    return {
        "stage": module,
        "snapshot": snapshot,
        "settings": settings,
        "settings_sha256": settings_sha256(settings),
        "code": {
            "sha256": closure.digest(code),
            "files": {p.relative_to(closure.ROOT).as_posix(): sha256(p) for p in code},
        },
        "inputs": {str(p): checksum(Path(p)) for p in sorted(map(str, inputs))},
        "tools": closure.versions([module]),
    }


def write(
    path: Path, module: str, settings, inputs: list[Path], snapshot: str | None = None
) -> None:
    write_json(path, record(module, settings, inputs, snapshot))
