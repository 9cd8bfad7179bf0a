"""The pipeline on a real SLURM cluster through profiles/slurm (the official executor plugin).
`make test-slurm` brings up a single-node cluster on this machine (profiles/slurm/single_node.sh)
and runs this test beside the rest of the suite: one month of a small sample (tests/project_copy.py:
small) goes through the whole pipeline as SLURM jobs, Train's downloads and shards as several jobs
each; every output the local build's dvc.lock records (snapshots, curated and subset tables, image
reports, shards, exports, the model, evaluations and tables) must be the bytes of the same project
built locally by `dvc repro` (conftest: small_build, which test_dvc uses too)."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO
from tests.project_copy import locked_outputs, output_hashes, run, small_project

pytestmark = pytest.mark.slurm


def cluster_nodes() -> str:
    try:
        return subprocess.run(
            ["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30
        ).stdout
    except FileNotFoundError:
        return ""


def scattered_outputs(rule: str, log: str) -> list[str]:
    """The output of every job of `rule` in a Snakemake log (`rule` under SLURM, `localrule`
    locally)."""
    return sorted(
        re.findall(rf"^(?:local)?rule {rule}:\n    input: .*\n    output: (.*)$", log, re.M)
    )


def test_pipeline_on_slurm_gives_the_local_tables(tmp_path, request):
    assert re.search(r"idle|mixed|allocated", cluster_nodes()), (
        "no SLURM cluster answers: bring one up with `bash profiles/slurm/single_node.sh` (as "
        "root), or run `make test-slurm`"
    )
    slurm = tmp_path / "slurm"
    small_project(REPO, slurm)
    log = run(
        "snakemake",
        "--profile",
        "profiles/slurm",
        "--max-threads",
        "2",
        cwd=slurm,
        timeout=3600,  # a hang guard: CI has needed over 2400 s, twice this machine's time
    )
    # asked for only now, so that the SLURM jobs run while it is built (or while test_dvc builds it)
    local, repro = request.getfixturevalue("small_build")

    steps = int(re.findall(r"(\d+) of \1 steps \(100%\) done", log)[-1])
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == steps - 1, log[-3000:]  # every job but `all` went through sbatch
    for rule, train_jobs in (
        ("download_chunk", "images/train/chunks/"),
        ("shard_part", "images/train/parts/train/"),
    ):
        on_slurm = scattered_outputs(rule, log)
        assert on_slurm == scattered_outputs(rule, repro), rule  # the same jobs as the local build
        assert sum(train_jobs in output for output in on_slurm) >= 3, (rule, on_slurm)
    # every output dvc.lock records, rebuilt from the raw snapshots as the cluster runs it
    paths = locked_outputs(local)
    ours, theirs = output_hashes(slurm, paths), output_hashes(local, paths)
    assert ours.keys() == theirs.keys()
    assert not {name for name in ours if ours[name] != theirs[name]}, "differ from the local build"
