"""DVC end to end on one month of a small sample (tests/project_copy.py: small): repro, clean
status, push to a local-folder remote and to S3 (a moto server), a fresh clone that pulls everything
and leaves Snakemake nothing to do, another whose changed evaluation setting reruns the evaluation
alone, and `dvc metrics diff` between the two git revisions. That a rebuild from the raw snapshots
gives every output's bytes is test_slurm's comparison (the same month built through SLURM)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from tests.project_copy import MONTH, edit_config, hashes, is_provenance, run

pytestmark = pytest.mark.slow
REMOTE_S3 = "s3://dvc-remote/biotrove"  # a bucket on the moto server


@pytest.fixture(scope="module")
def repo(small_build, tmp_path_factory, s3_server) -> Path:
    """A copy of the small project built by `dvc repro` (conftest: small_build); its local remote a
    folder beside it, an empty bucket on the S3 server for the S3 remote."""
    repo = tmp_path_factory.mktemp("dvc") / "repo"
    shutil.copytree(small_build[0], repo, symlinks=True)
    run("dvc", "remote", "modify", "--local", "local", "url", str(remote(repo)), cwd=repo)
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(
        Bucket="dvc-remote"
    )
    return repo


def remote(repo: Path) -> Path:
    return repo.parent / "remote"


def test_repro_leaves_data_and_pipelines_up_to_date(repo):
    assert "Data and pipelines are up to date" in run("dvc", "status", cwd=repo)


@pytest.fixture(scope="module")
def edited(repo) -> tuple[dict, dict, str]:
    """dvc.lock's stages before and after a comment is edited in the subsets stage's code and
    `dvc repro` runs again, and what that repro printed."""
    before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    code = repo / "workflow_scripts" / "subsets" / "subset_tables.py"
    code.write_text(code.read_text() + "# an edited comment\n")
    log = run("dvc", "repro", cwd=repo)
    return before, yaml.safe_load((repo / "dvc.lock").read_text())["stages"], log


def test_an_edited_comment_reruns_its_stage_alone(edited):
    """A comment edited in one stage's code reruns that stage alone: its outputs keep their bytes
    (what made them, its provenance, sits beside them), so no stage downstream of it runs again."""
    before, after, log = edited
    subsets = {f"subsets@{MONTH}"}
    assert set(re.findall(r"Running stage '([^']+)'", log)) == subsets
    assert {stage for stage in before if before[stage] != after[stage]} == subsets
    assert all(data_outs(before[stage]) == data_outs(after[stage]) for stage in before)


@pytest.fixture(scope="module")
def pushed(repo, edited, s3_server) -> Path:
    """The built project pushed to both remotes and its dvc.lock committed."""
    run("dvc", "push", cwd=repo)  # the configured remote (a local folder here)
    add_s3_remote(repo, REMOTE_S3, s3_server)
    run("dvc", "push", "-r", "s3", cwd=repo)
    run("git", "add", "-A", cwd=repo)
    run("git", "commit", "-qm", "lock", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def pulled(pushed, s3_server) -> Path:
    """A fresh clone that pulled everything from the S3 remote."""
    pulled = pushed.parent / "pulled"
    run("git", "clone", "-q", str(pushed), str(pulled), cwd=pushed.parent)
    add_s3_remote(pulled, REMOTE_S3, s3_server)
    run("dvc", "pull", "-r", "s3", cwd=pulled)
    return pulled


def test_a_clone_pulled_from_s3_is_up_to_date_with_the_same_bytes(pulled, repo):
    assert "Data and pipelines are up to date" in run("dvc", "status", cwd=pulled)
    for folder in (f"results/{MONTH}/paper_tables", f"data/snapshots/{MONTH}/shards"):
        assert hashes(pulled / folder) == hashes(repo / folder), folder


def test_snakemake_has_nothing_to_do_in_a_pulled_clone_once_touched(pulled, repo):
    """DVC restores files with new modification times, in no particular order; Snakemake 9 reruns
    a job whose input is newer than its output whatever its rerun triggers: --touch orders them."""
    assert "Updated input files" in run("snakemake", "-n", cwd=pulled)
    run("snakemake", "--touch", cwd=pulled)
    assert "Nothing to be done" in run("snakemake", "-n", cwd=pulled)
    assert hashes(pulled / "results") == hashes(repo / "results")


@pytest.fixture(scope="module")
def revised(pushed) -> tuple[Path, str]:
    """Another clone that pulled everything from the local remote, then dropped the random-init
    control from its configuration and ran `dvc repro`, committed as a second revision; and what
    that repro printed."""
    clone = pushed.parent / "revised"
    run("git", "clone", "-q", str(pushed), str(clone), cwd=pushed.parent)
    run("dvc", "remote", "modify", "--local", "local", "url", str(remote(pushed)), cwd=clone)
    run("dvc", "pull", cwd=clone)
    edit_config(
        clone, lambda config: config["evaluate"].update(models={"tiny-cpu": {"recipe": "tiny-cpu"}})
    )
    run(sys.executable, "-m", "tools.generate", cwd=clone)
    log = run("dvc", "repro", cwd=clone)
    run("git", "commit", "-qam", "no control", cwd=clone)
    return clone, log


def test_a_changed_evaluation_setting_reruns_the_evaluation_alone(revised, pushed):
    """Only the stage that reads the setting runs again; nothing else's lock entry moves."""
    clone, log = revised
    before, after = (
        yaml.safe_load((folder / "dvc.lock").read_text())["stages"] for folder in (pushed, clone)
    )
    evaluate = {f"evaluate@{MONTH}"}
    assert set(re.findall(r"Running stage '([^']+)'", log)) == evaluate
    assert {stage for stage in before if before[stage] != after[stage]} == evaluate


def test_metrics_diff_between_revisions_names_the_removed_control(revised, pushed):
    clone, _ = revised
    diff = json.loads(run("dvc", "metrics", "diff", "HEAD~1", "HEAD", "--json", cwd=clone))
    summary = diff[f"results/{MONTH}/paper_tables/metrics.json"]
    old = json.loads((pushed / "results" / MONTH / "paper_tables" / "metrics.json").read_text())
    removed = summary["random-init.balanced.top1"]
    assert (removed["old"], removed["new"]) == (old["random-init"]["balanced"]["top1"], None)
    assert not any(key.startswith("tiny-cpu") for key in summary), (
        "the trained model's metrics changed"
    )


def data_outs(stage: dict) -> dict[str, str]:
    """A locked stage's outputs and their hashes, provenance aside."""
    return {out["path"]: out["md5"] for out in stage["outs"] if not is_provenance(out["path"])}


def add_s3_remote(repo: Path, url: str, endpoint: str) -> None:
    run("dvc", "remote", "add", "--local", "s3", url, cwd=repo)
    run("dvc", "remote", "modify", "--local", "s3", "endpointurl", endpoint, cwd=repo)
