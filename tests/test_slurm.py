"""The pipeline on a real SLURM cluster through profiles/slurm (the official executor plugin).
`make test-slurm` brings up a single-node cluster on this machine (profiles/slurm/single_node.sh)
and runs this test: one month of a small sample goes through the whole pipeline, training and
evaluation included, once locally and once as SLURM jobs, Train's downloads and shards as several
jobs each; the shards and tables must be the same bytes."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO
from tests.project_copy import edit_config, git_copy, hashes, run

pytestmark = pytest.mark.slurm
SMALL = 0.05  # sample scale: every subset still has images
# one snapshot: every stage still runs, in half the jobs (each job costs ~15 s of SLURM polling)
MONTH = "2024-09-27"


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


def small(config: dict) -> None:
    """One month of a small sample, its Train (about 340 images: config.yaml's genus draw takes two
    of its genera) downloaded and sharded in 3 jobs each."""
    config.update(snapshots=[MONTH])
    config["sample"].update(scale=SMALL)
    config["images"].update(urls_per_job=120)
    config["shards"].update(samples_per_shard=60, shards_per_job=2)


def test_pipeline_on_slurm_gives_the_local_tables(tmp_path):
    assert re.search(r"idle|mixed|allocated", cluster_nodes()), (
        "no SLURM cluster answers: bring one up with `bash profiles/slurm/single_node.sh` (as "
        "root), or run `make test-slurm`"
    )
    copies = {}
    for name in ("local", "slurm"):
        copies[name] = tmp_path / name
        git_copy(REPO, copies[name])
        edit_config(copies[name], small)

    local = run("snakemake", "--cores", "2", cwd=copies["local"], timeout=1200)
    log = run(
        "snakemake",
        "--profile",
        "profiles/slurm",
        "--max-threads",
        "2",
        cwd=copies["slurm"],
        timeout=2400,
    )

    steps = int(re.findall(r"(\d+) of \1 steps \(100%\) done", local)[-1])
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == steps - 1, log[-3000:]  # every job but `all` went through sbatch
    for rule, train_jobs in (
        ("download_chunk", "images/train/chunks/"),
        ("shard_part", "images/train/parts/train/"),
    ):
        on_slurm = scattered_outputs(rule, log)
        assert on_slurm == scattered_outputs(rule, local), rule  # the same jobs as the local run
        assert sum(train_jobs in output for output in on_slurm) >= 3, (rule, on_slurm)
    for folder in (
        f"results/{MONTH}/paper_tables",
        f"results/{MONTH}/subset_tables",
        f"results/{MONTH}/shot_bands",
        f"results/{MONTH}/data_card",
        f"data/snapshots/{MONTH}/shards",
        f"data/snapshots/{MONTH}/exports",
    ):
        assert hashes(copies["slurm"] / folder) == hashes(copies["local"] / folder), folder
