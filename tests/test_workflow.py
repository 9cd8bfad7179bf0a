"""Config validation and its one source of defaults, the Snakemake workflow (planning, `latest`,
lint, format), the generated dvc.yaml and conda environments, the lock, and the install target."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from snakemake.utils import update_config

from tests.conftest import REPO
from tests.project_copy import git_copy, run
from workflow_scripts.common import closure, contracts
from workflow_scripts.common.captions import CAPTION_TYPES
from workflow_scripts.common.config import ConfigError, load_config, memory_mb, settings, validated
from workflow_scripts.common.taxonomy import RANKS

VENV_BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
HEAVY = (
    "duckdb",
    "matplotlib",
    "numpy",
    "pandas",
    "pyarrow",
    "PIL",
    "torch",
    "open_clip",
    "webdataset",
    "img2dataset",
)


def snakemake(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    # Snakemake ignores SIGTERM while jobs run: `timeout -k` kills it if it outlives the limit
    return subprocess.run(
        ["timeout", "-k", "30", "300", "snakemake", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=360,
    )


def test_real_data_overlay_validates():
    """Layered as Snakemake layers `--configfile config.yaml configs/inat-s3.yaml` (nested keys
    merged): the real bucket, and Train left the paper's (the sample's genus draw switched off)."""
    config = load_config(REPO / "config.yaml")
    update_config(config, yaml.safe_load((REPO / "configs" / "inat-s3.yaml").read_text()))
    validated(config)
    assert (
        config["fetch"]["source"] == "s3://inaturalist-open-data"
        and config["images"]["url_rewrite"] is None
    )
    assert (
        config["subsets"]["genus_sampled"]["genera"] == 0
        and "genus_sampled" not in config["evaluate"]["benchmarks"]
    )


def test_defaults_come_from_the_schema_alone():
    schema = yaml.safe_load(
        (REPO / "workflow_scripts" / "common" / "schemas" / "config.schema.yaml").read_text()
    )
    curate = settings("curate", {"threads": 3})
    assert curate["threads"] == 3
    assert (
        curate["memory_limit"]
        == schema["properties"]["curate"]["properties"]["memory_limit"]["default"]
    )
    assert settings("subsets")["lifestages"]["stages"] == [
        "egg",
        "larva",
        "pupa",
        "adult",
    ]  # nested defaults too
    # the stages keep no defaults of their own: no module-level DEFAULTS anywhere
    sources = [p.read_text() for p in (REPO / "workflow_scripts").rglob("*.py")]
    assert not any(re.search(r"^DEFAULTS\b", text, re.M) for text in sources)


def test_the_schema_names_the_contracts_subsets_ranks_and_caption_types():
    """The schema's enums repeat three facts the code defines: they must say the same."""
    schema = yaml.safe_load(
        (REPO / "workflow_scripts" / "common" / "schemas" / "config.schema.yaml").read_text()
    )
    sections, subset = schema["properties"], {"$ref": "#/definitions/subset"}
    assert tuple(schema["definitions"]["subset"]["enum"]) == contracts.SUBSETS
    assert sections["images"]["properties"]["subsets"]["items"] == subset
    assert sections["evaluate"]["properties"]["benchmarks"]["items"] == subset
    assert sections["export"]["properties"]["inat2021"]["items"] == subset
    assert tuple(sections["train"]["properties"]["caption_types"]["items"]["enum"]) == CAPTION_TYPES
    rank = {"$ref": "#/definitions/rank"}
    assert tuple(schema["definitions"]["rank"]["enum"]) == RANKS
    assert schema["definitions"]["taxa"]["items"]["properties"]["rank"] == rank
    assert sections["subsets"]["properties"]["categories"]["additionalProperties"] == rank


def test_a_renamed_key_is_read_with_a_warning():
    """config.RENAMED: the old name of a key still works until it is removed (CHANGELOG.md)."""
    with pytest.warns(
        FutureWarning, match=r"shards\.chunk_size is deprecated: write shards\.window"
    ):
        assert settings("shards", {"chunk_size": 7})["window_size"] == 7
    with pytest.raises(ConfigError, match="part_size and segment_size both given"):
        settings("shards", {"part_size": 7, "segment_size": 7})


@pytest.mark.parametrize(
    "bad, named",
    [
        ({"fetch": {"sourc": "x"}}, "'sourc' was unexpected"),
        ({"sample": {"seed": "abc"}}, "'abc' is not of type 'integer'"),
        ({"snapshots": ["2024-9-27"]}, "2024-9-27"),
        ({"data_rot": "x"}, "'data_rot' was unexpected"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(bad, named):
    with pytest.raises(Exception, match=re.escape(named)):
        validated(bad)


RECIPES = "(choices: bt-clip-b, bt-clip-m, bt-clip-o, tiny-cpu)"


@pytest.mark.parametrize(
    "bad, named",
    [
        (
            {"snapshots": ["2024-08-27", "2024-02-30"]},
            "config snapshots[1]: '2024-02-30' is not a real date",
        ),
        (
            {"sample": {"months": ["2023-02-29", "2024-09-27"]}},
            "config sample.months[0]: '2023-02-29' is not a real date",
        ),
        (
            {"subsets": {"observed_before": "2024-13-01"}},
            "config subsets.observed_before: '2024-13-01' is not a real date",
        ),
        (
            {"subsets": {"lifestages": {"observed_to": "2024-04-31"}}},
            "config subsets.lifestages.observed_to: '2024-04-31' is not a real date",
        ),
        (
            {"train": {"run": ["tiny-cpu", "bt-clip-x"]}},
            f"config train.run: no recipe 'bt-clip-x' in train.recipes {RECIPES}",
        ),
        (
            {"evaluate": {"models": {"BT-CLIP-X": {"recipe": "bt-clip-x"}}}},
            f"config evaluate.models.BT-CLIP-X.recipe: no recipe 'bt-clip-x' in "
            f"train.recipes {RECIPES}",
        ),
        (
            {"images": {"subsets": ["train", "balancd"]}},
            "config images.subsets[1]: 'balancd' is not allowed (choices: balanced, genus_sampled, "
            "lifestages, train, unseen)",
        ),
        (
            {"evaluate": {"benchmarks": ["balanced", "genus_sampled"]}},
            "config evaluate.benchmarks: genus_sampled is listed but subsets.genus_sampled.genera "
            "is 0 (none drawn)",
        ),
        (
            {"subsets": {"genus_sampled": {"genera": 5, "categories": ["Plants"]}}},
            "config subsets.genus_sampled.categories: 'Plants' is not in subsets.categories "
            "(choices: Arachnida, Aves,",
        ),
        (
            {
                "subsets": {
                    "genus_sampled": {
                        "genera": 0.1,
                        "include": [{"rank": "species", "name": "Quercus alba"}],
                    }
                }
            },
            "config subsets.genus_sampled.include: a species would take part of a genus: name a "
            "genus or a higher taxon",
        ),
        (
            {"subsets": {"genus_sampled": {"genera": 1.5}}},
            "config subsets.genus_sampled.genera: 1.5 is greater than or equal to the maximum of 1 "
            "(allowed: 0: none",
        ),
        (
            {"evaluate": {"benchmarks": ["unseen"], "levels_benchmark": "balanced"}},
            "config evaluate.levels_benchmark: 'balanced' is not in evaluate.benchmarks "
            "(choices: unseen)",
        ),
        (
            {
                "evaluate": {
                    "external": {
                        "train_test": {
                            "format": "folder",
                            "images": "x",
                            "metadata": "x.csv",
                            "key_column": "k",
                            "label_column": "l",
                            "name_mode": "scientific",
                        }
                    }
                }
            },
            "config evaluate.external: 'train_test' is the name of one of our benchmarks: "
            "rename it",
        ),
    ],
)
def test_config_semantics_are_checked_at_load(tmp_path, bad, named):
    """What a schema cannot say (a real date, a name defined elsewhere in the config) fails when the
    config is loaded, naming the key, the bad value and the choices, not later as a missing file."""
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match=re.escape(named)):
        load_config(path)


def test_config_semantics_accept_the_shipped_configs_and_their_own_names():
    for path in (REPO / "config.yaml", *sorted((REPO / "configs").glob("*.yaml"))):
        load_config(path)  # an overlay alone: the rest takes the schema's defaults
    assert (
        settings("subsets", {"observed_before": "2024-02-29"})["observed_before"] == "2024-02-29"
    )  # a leap day
    recipe = settings("train")["recipes"]["tiny-cpu"]
    own = {
        "snapshots": ["latest"],
        "train": {"run": ["mine"], "recipes": {"mine": recipe}},
        "evaluate": {"models": {"Mine": {"recipe": "mine"}}},
    }
    validated(own)  # names defined by the config itself
    # a stage's section alone is checked against the schema; its names are checked on the whole
    # config
    assert settings("evaluate", own["evaluate"])["models"] == {"Mine": {"recipe": "mine"}}


def test_memory_sizes():
    assert (memory_mb("4GB"), memory_mb("512MB"), memory_mb("1.5GiB")) == (4096, 512, 1536)
    with pytest.raises(ValueError, match="not a memory size"):
        memory_mb("lots")


def test_snakemake_rejects_an_unknown_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fetch:\n  retires: 3\n")
    result = snakemake("-n", "--configfile", "config.yaml", str(bad))
    assert result.returncode != 0
    assert "'retires' was unexpected" in result.stderr + result.stdout


def planned_jobs(*args: str, cwd) -> dict[str, int]:
    """`snakemake -n`'s job counts per rule, in the folder `cwd` with the repo's Snakefile and
    config."""
    result = snakemake(
        "-n",
        "--directory",
        str(cwd),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config.yaml"),
        *args,
    )
    assert result.returncode == 0, result.stderr
    return {
        rule: int(n)
        for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout.split("Job stats:")[1], re.M)
    }


def test_dry_run_plans_every_stage_for_both_months(tmp_path):
    """Before any data exists: the image jobs per chunk and per shard part wait for the subsets."""
    assert planned_jobs(cwd=tmp_path) == {
        "sample": 1,
        "fetch": 2,
        "curate": 2,
        "stats": 2,
        "subsets": 2,
        "check_overlap": 2,
        "subset_tables": 2,
        "genus_sampled_long_tail": 2,
        "download_report": 10,
        "check_image_overlap": 2,
        "shard_order": 10,
        "shards": 10,
        "store_index": 2,
        "train": 2,
        "evaluate": 4,
        "paper_tables": 2,
        "shot_bands": 2,
        "data_card": 2,
        "clip_benchmark_export": 10,
        "inat_export": 8,
        "diff": 1,
        "all": 1,
        "total": 81,
    }


@pytest.mark.slow
def test_after_subsets_a_dry_run_lists_a_job_per_url_chunk_and_shard_part(tmp_path):
    """The subsets checkpoint's row counts decide the image jobs: ceil(rows / urls_per_job)
    downloads per subset and ceil(rows / (samples_per_shard * shards_per_job)) shard parts per shard
    set."""
    overlay = tmp_path / "small.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "snapshots": ["2024-09-27"],
                "sample": {"scale": 0.05},
                "images": {"urls_per_job": 200},
                "shards": {"samples_per_shard": 50},
            }
        )
    )
    subsets_report = f"data/snapshots/2024-09-27/subsets/{contracts.SUBSETS_REPORT}"
    ran = snakemake(
        subsets_report,
        "--cores",
        "2",
        "--directory",
        str(tmp_path),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config.yaml"),
        str(overlay),
    )
    assert ran.returncode == 0, ran.stderr
    subsets = json.loads((tmp_path / subsets_report).read_text())["subsets"]
    jobs = planned_jobs(str(overlay), cwd=tmp_path)
    assert (
        jobs["download_chunk"]
        == sum(-(-subset["images"] // 200) for subset in subsets.values())
        >= 6
    )
    shard_sets = [
        subsets[name].get("splits", {contracts.WHOLE: subsets[name]["images"]}).get(shard_set, 0)
        for name in subsets
        for shard_set in contracts.shard_sets(name)
    ]  # Train's and genus_sampled's per split
    assert jobs["shard_part"] == sum(max(1, -(-n // (50 * 4))) for n in shard_sets)
    assert (jobs["download_report"], jobs["shards"], jobs["check_overlap"]) == (5, 5, 1)


def test_parsing_the_snakefile_imports_nothing_heavy():
    """Beyond what Snakemake itself loads, parsing the workflow imports no heavy library (and asks
    no source anything: see the `latest` test)."""
    probe = (
        "import sys\nfrom pathlib import Path\nfrom snakemake.api import SnakemakeApi\n"
        "from snakemake.settings.types import OutputSettings, Quietness, ResourceSettings\n"
        "before = set(sys.modules)\n"
        "with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:\n"
        "    api.workflow(ResourceSettings(), snakefile=Path('Snakefile'), "
        "workdir=Path('.'))._workflow\n"
        f"print(sorted(m for m in {HEAVY!r} if m in set(sys.modules) - before))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_planning_latest_asks_no_source(tmp_path):
    unreachable = {
        "snapshots": ["latest"],
        "fetch": {"source": "s3://no-such-bucket-here", "endpoint_url": "http://127.0.0.1:9"},
    }
    (tmp_path / "unreachable.yaml").write_text(yaml.safe_dump(unreachable))
    planned = snakemake("-n", "--configfile", "config.yaml", str(tmp_path / "unreachable.yaml"))
    assert planned.returncode == 0, planned.stderr  # planning asks no source anything
    assert re.search(r"^latest_snapshot\s+1$", planned.stdout, re.M)


def test_latest_is_resolved_by_a_checkpoint_when_the_workflow_runs(mirror, tmp_path):
    local = {
        "snapshots": ["latest"],
        "fetch": {"source": str(mirror)},
        "data_root": str(tmp_path / "data"),
        "logs_root": str(tmp_path / "logs"),
    }
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(local))
    overlay = ("--configfile", "config.yaml", str(tmp_path / "local.yaml"))
    snapshots = tmp_path / "data" / "snapshots"
    # the checkpoint answers (its file is temporary: the next run asks again), then the month it
    # named is fetched from the bucket-root tables, as `latest` asks
    for target in (snapshots / "latest.json", snapshots / "2024-09-27" / "raw"):
        ran = snakemake("--cores", "1", str(target), *overlay)
        assert ran.returncode == 0, ran.stderr
    manifest = json.loads((snapshots / "2024-09-27" / "raw" / "manifest.json").read_text())
    assert (manifest["requested"], manifest["snapshot"]) == ("latest", "2024-09-27")
    assert not (snapshots / "latest.json").exists()


def test_lint_and_format_are_clean():
    result = snakemake("--lint")
    assert result.returncode == 0 and "Congratulations" in result.stdout + result.stderr, (
        result.stdout
    )
    for command in (
        ["snakefmt", "--check", "Snakefile", "rules"],
        ["ruff", "format", "--check", "."],
        ["ruff", "check", "."],
        ["lint-imports", "--no-cache"],  # .importlinter: the stages' layers, no import cycles
    ):
        result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"


def modules_the_rules_run() -> list[str]:
    return sorted(
        {
            m
            for smk in (REPO / "rules").glob("*.smk")
            for m in re.findall(r"-m (workflow_scripts[\w.]*)", smk.read_text())
        }
    )


@pytest.mark.parametrize(
    "module", [*modules_the_rules_run(), "workflow_scripts.common.inat_format"]
)
def test_every_stage_has_a_cli(module):
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0 and "usage:" in result.stdout


def renamed_modules() -> dict[str, str]:
    """Each deprecated module name (a module that calls run_as) and the name it runs."""
    return {
        ".".join(path.relative_to(REPO).with_suffix("").parts): new
        for path in sorted((REPO / "workflow_scripts").rglob("*.py"))
        for new in re.findall(r'run_as\(__spec__\.name, "([\w.]+)"\)', path.read_text())
    }


def test_an_old_module_name_warns_and_runs_the_stage_it_was_renamed():
    renamed = renamed_modules()
    assert len(renamed) == 11 and set(renamed.values()) <= set(modules_the_rules_run())
    old, new = "workflow_scripts.subsets.tables", "workflow_scripts.subsets.subset_tables"
    result = subprocess.run(
        [sys.executable, "-m", old, "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0 and f"usage: python -m {new}" in result.stdout
    assert f"python -m {old} is deprecated: use python -m {new}" in result.stderr


def test_every_rule_names_log_and_conda_env():
    for smk in sorted((REPO / "rules").glob("*.smk")):
        text = smk.read_text()
        for rule in re.findall(r"^(?:rule|checkpoint) (\w+):", text, re.M):
            body = text.split(f" {rule}:", 1)[1].split("\nrule ", 1)[0]
            assert "    log:" in body and "    conda:" in body, f"{smk.name}: rule {rule}"
            env = re.search(r'conda:\s+"\.\./(envs/[\w.]+)"', body).group(1)
            assert (REPO / env).is_file()


def test_every_rule_runs_the_module_of_its_name():
    """Rule `x` runs `python -m workflow_scripts[.<stage>].x` (docs/glossary.md: names)."""
    for smk in sorted((REPO / "rules").glob("*.smk")):
        parts = re.split(r"^(?:rule|checkpoint) (\w+):", smk.read_text(), flags=re.M)
        for rule, body in zip(parts[1::2], parts[2::2]):
            modules = re.findall(r"-m (workflow_scripts[\w.]*)", body)
            assert modules and {m.rsplit(".", 1)[-1] for m in modules} == {rule}, (
                f"{smk.name}: rule {rule} runs {modules}"
            )


def test_generated_files_are_what_the_rules_make_them():
    """dvc.yaml and envs/*.yaml as committed are what `make generate` writes from the rules now."""
    result = subprocess.run(
        [sys.executable, "-m", "tools.generate", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def provided(requirements: list[str]) -> set[str]:
    """The top-level modules the requirements install, with everything they require (installed
    distributions' metadata, extras and markers applied)."""
    modules_of: dict[str, set[str]] = {}
    for module, distributions in metadata.packages_distributions().items():
        for name in distributions:
            modules_of.setdefault(name.lower().replace("_", "-"), set()).add(module)
    pending, seen, found = [Requirement(r) for r in requirements], set(), set()
    while pending:
        requirement = pending.pop()
        name = requirement.name.lower().replace("_", "-")
        if (name, tuple(sorted(requirement.extras))) in seen:
            continue
        seen.add((name, tuple(sorted(requirement.extras))))
        found |= modules_of.get(name, set())
        for text in metadata.requires(requirement.name) or []:
            needed = Requirement(text)
            if needed.marker is None or any(
                needed.marker.evaluate({"extra": e}) for e in requirement.extras or [""]
            ):
                pending.append(needed)
    return found


@pytest.mark.parametrize("env", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_each_conda_env_provides_what_its_rules_import(env):
    spec = yaml.safe_load((REPO / "envs" / env).read_text())
    pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    modules = sorted(
        {
            m
            for smk in (REPO / "rules").glob("*.smk")
            for block in smk.read_text().split("\nrule ")
            if f'conda:\n        "../envs/{env}"' in block
            for m in re.findall(r"-m (workflow_scripts[\w.]*)", block)
        }
    )
    assert modules
    missing = closure.third_party(modules) - provided(pip)
    assert not missing, f"envs/{env} lacks what {', '.join(modules)} import: {sorted(missing)}"


def test_dvc_lock_is_true_to_the_committed_code(tmp_path):
    """Every dependency of dvc.lock that git holds (code, rules, config) has the hash the lock
    records, on a checkout with no data: DVC compares them itself (`dvc status`)."""
    git_copy(REPO, tmp_path)
    run("git", "init", "-q", cwd=tmp_path)
    result = subprocess.run(
        ["dvc", "status", "--json"],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    tracked = set(run("git", "ls-files", cwd=REPO).split())
    stale = {
        f"{stage}: {path} {how}"
        for stage, changes in status.items()
        for change in changes
        if isinstance(change, dict)
        for path, how in change.get("changed deps", {}).items()
        if path in tracked and how != "deleted"
    }
    stale |= {
        f"{stage}: {change}"
        for stage, changes in status.items()
        for change in changes
        if isinstance(change, str)
    }  # "changed command", "always changed"
    assert not stale, f"dvc.lock is stale (run `make demo` and commit it): {sorted(stale)}"


def test_every_pin_is_exact_and_in_the_lock():
    """pyproject.toml's pins (dependencies and every extra) are exact and requirements.lock holds
    each at the same version: a pin edited without `make lock` fails here."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = [
        Requirement(text)
        for text in project["dependencies"]
        + [d for extra in project["optional-dependencies"].values() for d in extra]
    ]
    locked = {
        canonicalize_name(requirement.name): requirement.specifier
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if line.strip() and not line.startswith("#")
        for requirement in [Requirement(line)]
    }
    assert not [str(pin) for pin in pins if len(pin.specifier) != 1 or "==" not in str(pin)]
    assert not [
        str(pin) for pin in pins if locked.get(canonicalize_name(pin.name)) != pin.specifier
    ]


def test_install_reruns_only_when_the_pins_change(tmp_path):
    """`make install` on a copy of the Makefile whose venv's python and uv record their calls: it
    installs uv, then the pins with it, once; a second call does nothing (`make -q` says up to
    date), a newer pin file installs again."""
    for name in ("Makefile", "pyproject.toml", "requirements.lock"):
        shutil.copy2(REPO / name, tmp_path / name)
    calls = tmp_path / "calls"
    for tool in ("python", "uv"):
        recorder = tmp_path / ".venv" / "bin" / tool
        recorder.parent.mkdir(parents=True, exist_ok=True)
        recorder.write_text(f'#!/bin/sh\necho "{tool} $@" >> {calls}\n')
        recorder.chmod(0o755)

    def install(*flags: str) -> int:
        return subprocess.run(
            ["make", *flags, "install"], cwd=tmp_path, capture_output=True
        ).returncode

    assert install() == 0 and install() == 0 and install("-q") == 0
    assert calls.read_text().splitlines() == [
        "python -m pip install --quiet --disable-pip-version-check uv==0.13.8",
        "uv pip install --quiet --python .venv/bin/python -c requirements.lock -e .[dev]",
    ]
    stamp = (tmp_path / ".venv" / ".installed").stat().st_mtime
    os.utime(tmp_path / "requirements.lock", (stamp + 10, stamp + 10))
    assert install("-q") != 0 and install() == 0
    assert len(calls.read_text().splitlines()) == 4
