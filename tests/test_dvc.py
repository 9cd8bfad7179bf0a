"""DVC end to end on a small sample: repro, clean status, push to a local-folder remote and to S3
(a moto server), a fresh clone that pulls everything and leaves Snakemake nothing to do, another
that rebuilds from the raw snapshots alone with the same bytes (dvc.lock records every output's
hash), and `dvc metrics diff` between two git revisions."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import boto3
import yaml

from tests.conftest import REPO
from tests.project_copy import edit_config, git_copy, hashes, run

SMALL = 0.05  # sample scale: every subset still has images


def test_repro_push_pull_rebuild_and_metrics_diff(tmp_path, s3_server):
    repo = tmp_path / "repo"
    git_copy(REPO, repo)

    def small(
        config: dict,
    ) -> None:  # small and quick, the same code path; the exports are rebuilt by test_slurm
        config["sample"].update(scale=SMALL)
        config["export"].update(clip_benchmark=False, inat2021=[])

    edit_config(repo, small)
    run(sys.executable, "-m", "tools.generate", cwd=repo)  # dvc.yaml follows the configuration
    run("git", "init", "-q", cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "copy", cwd=repo)
    remote = tmp_path / "remote"
    run("dvc", "remote", "modify", "--local", "local", "url", str(remote), cwd=repo)
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(
        Bucket="dvc-remote"
    )
    s3_remote = ("s3://dvc-remote/biotrove", s3_server)

    run("dvc", "repro", cwd=repo)
    assert "Data and pipelines are up to date" in run("dvc", "status", cwd=repo)

    # a comment edited in one stage's code reruns that stage alone: its outputs keep their bytes (what
    # made them, its provenance, sits beside them), so no stage downstream of it runs again
    before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    code = repo / "workflow_scripts" / "subsets" / "tables.py"
    code.write_text(code.read_text() + "# an edited comment\n")
    log = run("dvc", "repro", cwd=repo)
    after = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    subsets = {"subsets@2024-08-27", "subsets@2024-09-27"}
    assert set(re.findall(r"Running stage '([^']+)'", log)) == subsets
    assert {stage for stage in before if before[stage] != after[stage]} == subsets
    assert all(data_outs(before[stage]) == data_outs(after[stage]) for stage in before)
    run("dvc", "push", cwd=repo)  # the configured remote (a local folder here)
    add_s3_remote(repo, *s3_remote)
    run("dvc", "push", "-r", "s3", cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "lock", cwd=repo)

    # a fresh clone pulls everything from the S3 remote: Snakemake then has nothing to do
    pulled = tmp_path / "pulled"
    run("git", "clone", "-q", str(repo), str(pulled), cwd=tmp_path)
    add_s3_remote(pulled, *s3_remote)
    run("dvc", "pull", "-r", "s3", cwd=pulled)
    assert "Data and pipelines are up to date" in run("dvc", "status", cwd=pulled)
    for folder in (
        "results/2024-09-27/paper_tables",
        "results/diff",
        "data/snapshots/2024-09-27/shards",
    ):
        assert hashes(pulled / folder) == hashes(repo / folder), folder
    # DVC restores files with new modification times, in no particular order; Snakemake 9 reruns a
    # job whose input is newer than its output whatever its rerun triggers: --touch orders them
    assert "Updated input files" in run("snakemake", "-n", cwd=pulled)
    run("snakemake", "--touch", cwd=pulled)
    assert "Nothing to be done" in run("snakemake", "-n", cwd=pulled)
    assert hashes(pulled / "results") == hashes(repo / "results")

    # another clone pulls the raw snapshots alone from the local remote and rebuilds everything else
    # from nothing, as a second revision without the random-init control: every output before the
    # evaluation is the same bytes (dvc.lock records each one's hash), then `dvc metrics diff`
    clone = tmp_path / "clone"
    run("git", "clone", "-q", str(repo), str(clone), cwd=tmp_path)
    run("dvc", "remote", "modify", "--local", "local", "url", str(remote), cwd=clone)
    run("dvc", "pull", "fetch@2024-08-27", "fetch@2024-09-27", cwd=clone)
    edit_config(
        clone, lambda config: config["evaluate"].update(models={"tiny-cpu": {"recipe": "tiny-cpu"}})
    )
    run(sys.executable, "-m", "tools.generate", cwd=clone)
    run("dvc", "repro", cwd=clone)
    before, after = (
        yaml.safe_load((folder / "dvc.lock").read_text())["stages"] for folder in (repo, clone)
    )
    assert {stage for stage in before if before[stage] != after[stage]} == {
        "evaluate@2024-08-27",
        "evaluate@2024-09-27",
        "diff@2024-08-27_vs_2024-09-27",
    }, "a rebuild from clean changed an output"
    run("git", "commit", "-qam", "no control", cwd=clone)
    diff = json.loads(run("dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json", cwd=clone))
    summary = diff["results/2024-09-27/paper_tables/metrics.json"]
    old = json.loads(
        (pulled / "results" / "2024-09-27" / "paper_tables" / "metrics.json").read_text()
    )
    removed = summary["random-init.balanced.top1"]
    assert (removed["old"], removed["new"]) == (old["random-init"]["balanced"]["top1"], None)
    assert not any(key.startswith("tiny-cpu") for key in summary), (
        "the trained model's metrics changed"
    )


def data_outs(stage: dict) -> dict[str, str]:
    """A locked stage's outputs and their hashes, provenance aside."""
    return {
        out["path"]: out["md5"]
        for out in stage["outs"]
        if not out["path"].endswith(".provenance.json")
    }


def add_s3_remote(repo: Path, url: str, endpoint: str) -> None:
    run("dvc", "remote", "add", "--local", "s3", url, cwd=repo)
    run("dvc", "remote", "modify", "--local", "s3", "endpointurl", endpoint, cwd=repo)
