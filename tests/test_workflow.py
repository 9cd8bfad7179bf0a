"""Config validation, the Snakemake workflow, the environments and the install target."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
import yaml

from tests.conftest import REPO
from workflow_scripts.config import fetch_options, load_config, memory_mb, snapshot_specs, source_location, validated
from workflow_scripts.curate import DEFAULTS as CURATE_DEFAULTS
from workflow_scripts.subsets import DEFAULTS as SUBSETS_DEFAULTS
from workflow_scripts.download import DEFAULTS as DOWNLOAD_DEFAULTS
from workflow_scripts.shards import DEFAULTS as SHARDS_DEFAULTS
from workflow_scripts.evaluate import DEFAULTS as EVALUATE_DEFAULTS

VENV_BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}


def snakemake(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    # Snakemake ignores SIGTERM while jobs run: `timeout -k` kills it if it outlives the limit
    return subprocess.run(["timeout", "-k", "30", "300", "snakemake", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=360)


def test_config_yaml_spells_out_every_default():
    assert load_config(REPO / "config.yaml") == validated({})


def test_real_data_overlay_validates():
    config = load_config(REPO / "config.yaml")
    overlay = yaml.safe_load((REPO / "configs" / "inat-s3.yaml").read_text())
    for key, value in overlay.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    validated(config)
    assert source_location(config) == "s3://inaturalist-open-data"
    assert "--signed" not in fetch_options(config)


@pytest.mark.parametrize("bad, named", [
    ({"fetch": {"sourc": "x"}}, "'sourc' was unexpected"),
    ({"sample": {"seed": "abc"}}, "'abc' is not of type 'integer'"),
    ({"snapshots": ["2024-9-27"]}, "2024-9-27"),
    ({"data_rot": "x"}, "'data_rot' was unexpected"),
])
def test_bad_config_is_rejected_naming_the_key(bad, named):
    with pytest.raises(Exception, match=re.escape(named)):
        validated(bad)


def test_snakemake_rejects_an_unknown_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fetch:\n  retires: 3\n")
    result = snakemake("-n", "--configfile", "config.yaml", str(bad))
    assert result.returncode != 0
    assert "'retires' was unexpected" in result.stderr + result.stdout


def test_dry_run_plans_every_stage_for_both_months(tmp_path):
    result = snakemake("-n", "--config", f"data_root={tmp_path}/data", f"logs_root={tmp_path}/logs",
                       f"results_root={tmp_path}/results")
    assert result.returncode == 0, result.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout.split("Job stats:")[1], re.M))
    assert jobs == {"sample_snapshot": "1", "fetch": "2", "curate": "2", "stats": "2", "subsets": "2",
                    "check_overlap": "2", "subset_tables": "2", "download": "8",
                    "check_image_overlap": "2", "shards": "8", "train": "2", "evaluate": "4",
                    "paper_tables": "2", "diff": "1", "all": "1", "total": "41"}


def test_stage_defaults_match_the_schema():
    assert validated({})["curate"] == CURATE_DEFAULTS
    assert validated({})["subsets"] == SUBSETS_DEFAULTS
    assert {k: v for k, v in validated({})["images"].items() if k != "subsets"} == DOWNLOAD_DEFAULTS
    assert validated({})["shards"] == SHARDS_DEFAULTS
    resources = ("models", "threads", "mem_mb", "runtime", "gpu")
    assert {k: v for k, v in validated({})["evaluate"].items() if k not in resources} == EVALUATE_DEFAULTS


def test_memory_sizes():
    assert (memory_mb("4GB"), memory_mb("512MB"), memory_mb("1.5GiB")) == (4096, 512, 1536)
    with pytest.raises(ValueError, match="not a memory size"):
        memory_mb("lots")


def test_latest_resolves_when_planning(mirror):
    config = validated({"snapshots": ["latest", "2024-08-27"], "fetch": {"source": str(mirror)}})
    assert snapshot_specs(config) == {"2024-09-27": "latest", "2024-08-27": "2024-08-27"}


def test_lint_is_clean():
    result = snakemake("--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


@pytest.mark.parametrize("module", ["sample_snapshot", "fetch", "inat_format", "curate", "stats", "subsets", "overlap",
                                    "subset_tables", "download", "shards", "train",
                                    "evaluate", "paper_tables", "diff"])
def test_every_stage_has_a_cli(module):
    result = subprocess.run([sys.executable, "-m", f"workflow_scripts.{module}", "--help"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0 and "usage:" in result.stdout


def test_every_rule_names_log_and_conda_env():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        for rule in re.findall(r"^rule (\w+):", text, re.M):
            if rule == "all":
                continue
            body = text.split(f"rule {rule}:", 1)[1].split("\nrule ", 1)[0]
            assert "    log:" in body and "    conda:" in body, f"{smk.name}: rule {rule}"
            env = re.search(r'conda:\s+"\.\./(envs/[\w.]+)"', body).group(1)
            assert (REPO / env).is_file()


def test_conda_envs_pin_what_pyproject_pins():
    pinned = dict(p.split("==") for p in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    pinned = {name.split("[")[0].lower(): version for name, version in pinned.items()}
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        pip = next(d["pip"] for d in yaml.safe_load(env_file.read_text())["dependencies"] if isinstance(d, dict))
        for requirement in pip:
            name, version = requirement.split("==")
            assert pinned.get(name.split("[")[0].lower()) == version, f"{env_file.name}: {requirement}"


def test_toolchain_pins():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for pin in ("torch==2.15.0", "torchvision==0.29.2", "open_clip_torch[training]==3.3.0", "webdataset==0.2.86"):
        assert pin in deps
    assert all("==" in d for d in deps)
    lock = (REPO / "requirements.lock").read_text()
    for dep in deps:
        name, version = dep.split("==")
        assert re.search(rf"^{re.escape(name.split('[')[0])}=={re.escape(version)}$", lock, re.M | re.I), dep


def test_install_is_idempotent():
    # `make -q` exits 0 only when the target is up to date: a second install does nothing
    result = subprocess.run(["make", "-q", "install"], cwd=REPO, env=ENV)
    assert result.returncode == 0
