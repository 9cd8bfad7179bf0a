"""A copy of the project (what git tracks) in a scratch folder, for the tests that run the whole
pipeline: DVC end to end and the SLURM cluster, both on the same small configuration."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

SMALL = 0.05  # sample scale: every subset still has images
# one snapshot: every stage but the diff between months still runs (that one is planned by
# test_workflow, tested by test_diff), in half the jobs (each SLURM job costs ~15 s of polling)
MONTH = "2024-09-27"

ENV = {
    **os.environ,
    "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}


# A guard against hangs, not a speed check: CI's machine has taken over 960 s for the small
# project's `dvc repro`, which takes 470-600 s on a 2-core machine here (docs/measurements.md).
HANG = 2700


def run(*command: str, cwd: Path, timeout: int = HANG) -> str:
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


def is_provenance(path: str) -> bool:
    """What made an output, written beside it: not the output's bytes."""
    return path.endswith(".provenance.json")


def locked_outputs(repo: Path) -> list[str]:
    """Every output path a built project's dvc.lock records for a stage its dvc.yaml has (the lock
    keeps the entries of stages a configuration no longer makes), provenance aside."""
    stages = set(run("dvc", "stage", "list", "--name-only", cwd=repo).split())
    locked = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return sorted(
        out["path"]
        for stage in stages & set(locked)
        for out in locked[stage]["outs"]
        if not is_provenance(out["path"])
    )


def output_hashes(repo: Path, paths: list[str]) -> dict[str, str]:
    """The hash of every file under the given paths (files or folders) of a project."""
    found = {}
    for path in paths:
        target = repo / path
        found.update(
            {f"{path}/{name}": digest for name, digest in hashes(target).items()}
            if target.is_dir()
            else {path: hashlib.sha256(target.read_bytes()).hexdigest()}
        )
    return found


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


def small(config: dict) -> None:
    """One month of a small sample, its Train (about 340 images: config.yaml's genus draw takes two
    of its genera) downloaded and sharded in 3 jobs each."""
    config.update(snapshots=[MONTH])
    config["sample"].update(scale=SMALL)
    config["images"].update(urls_per_job=120)
    config["shards"].update(samples_per_shard=60, shards_per_job=2)


def small_project(source: Path, repo: Path) -> None:
    """A git copy of the project in `source` on the small configuration, its dvc.yaml generated for
    it and committed, as a user's repository would be before `dvc repro`."""
    git_copy(source, repo)
    edit_config(repo, small)
    run(sys.executable, "-m", "tools.generate", cwd=repo)  # dvc.yaml follows the configuration
    run("git", "init", "-q", cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "copy", cwd=repo)
