"""A copy of the project (what git tracks) in a scratch folder, for the tests that run the whole
pipeline: DVC end to end and the SLURM cluster."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ENV = {
    **os.environ,
    "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


def run(*command: str, cwd: Path, timeout: int = 900) -> str:
    """Run a command to completion; a failure shows its output. Snakemake ignores SIGTERM while jobs
    run, so it is wrapped in `timeout -k` (killed 30 s after the limit)."""
    if command[0] == "snakemake":
        command = ("timeout", "-k", "30", str(timeout), *command)
    result = subprocess.run(
        command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout + 60
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def git_copy(source: Path, target: Path) -> None:
    """The project's files as git sees them (tracked and new, not ignored) in a new folder."""
    tracked = run("git", "ls-files", "-co", "--exclude-standard", cwd=source).split("\n")
    for name in filter(None, tracked):
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)


def edit_config(repo: Path, change) -> None:
    config = yaml.safe_load((repo / "config.yaml").read_text())
    change(config)
    (repo / "config.yaml").write_text(yaml.safe_dump(config))
