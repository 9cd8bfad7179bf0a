"""Load and validate config.yaml (the same schema and defaults the Snakefile uses)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from snakemake.utils import validate

SCHEMA = Path(__file__).parent / "schemas" / "config.schema.yaml"
SAMPLE_SOURCE = "sample"


def validated(config: dict) -> dict:
    """Fill in defaults and check against the schema; raises naming the offending key."""
    validate(config, str(SCHEMA), set_default=True)
    return config


def load_config(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return validated(yaml.safe_load(handle) or {})


def memory_mb(text: str) -> int:
    """'4GB', '512MB', '1.5GiB' -> megabytes, for a rule's mem_mb resource."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", text, re.I)
    if not match:
        raise ValueError(f"not a memory size: {text!r} (write e.g. 4GB or 512MB)")
    scale = {"K": 1 / 1024, "": 1 / 1024 ** 2, "M": 1, "G": 1024, "T": 1024 ** 2}[match.group(2).upper()]
    return max(1, round(float(match.group(1)) * scale))


def uses_sample(config: dict) -> bool:
    """Whether fetch reads the generated sample mirror (which the sample_snapshot rule makes)."""
    return config["fetch"]["source"] == SAMPLE_SOURCE


def sample_mirror_input(config: dict) -> list[str]:
    """The mirror (its checksums list, which the sample_snapshot rule declares) as a rule input when
    the sample is the source, else nothing."""
    return [f"{mirror_dir(config)}.sha256"] if uses_sample(config) else []


def mirror_dir(config: dict) -> str:
    return f"{config['data_root']}/mirror"


def source_location(config: dict) -> str:
    """Where fetch reads from: the generated mirror for 'sample', else the configured location."""
    return mirror_dir(config) if uses_sample(config) else config["fetch"]["source"]


def fetch_options(config: dict) -> list[str]:
    """The fetch CLI flags that config.yaml's fetch section sets."""
    fetch = config["fetch"]
    options = ["--taxonomy", fetch["taxonomy"], "--region", fetch["region"], "--retries", str(fetch["retries"]),
               "--backoff", str(fetch["backoff_seconds"]), "--timeout", str(fetch["timeout_seconds"]),
               "--gzip-level", str(fetch["gzip_level"])]
    if fetch["endpoint_url"]:
        options += ["--endpoint-url", fetch["endpoint_url"]]
    if not fetch["anonymous"]:
        options.append("--signed")
    return options


def snapshot_specs(config: dict) -> dict[str, str]:
    """{date: what to ask fetch for}; 'latest' is resolved against the source now."""
    specs = {}
    for spec in config["snapshots"]:
        if spec == "latest":
            from workflow_scripts.fetch import resolve
            from workflow_scripts.storage import open_source

            fetch = config["fetch"]
            source = open_source(source_location(config), fetch["endpoint_url"], fetch["anonymous"],
                                 fetch["region"], fetch["timeout_seconds"])
            specs[resolve(source, "latest", fetch["retries"], fetch["backoff_seconds"]).date] = "latest"
        else:
            specs.setdefault(spec, spec)
    return specs


def lifestages_export(config: dict) -> str | None:
    """The LifeStages web export: the configured one, else the sample mirror's (None for real data)."""
    export = config["subsets"]["lifestages"]["export"]
    if export is None and uses_sample(config):
        return f"{mirror_dir(config)}/exports/observations-lifestages.csv"
    return export


def train_launcher(recipe: dict) -> str:
    """How the train rule starts workflow_scripts.train: one process; torchrun with one process per
    GPU on one node; or, across nodes, srun with one task per GPU (open_clip's SLURM recipe: each
    task reads its rank from SLURM's environment)."""
    if recipe["nodes"] > 1:
        return f"srun --ntasks-per-node={max(1, recipe['gpu'])} --cpu-bind=v --accel-bind=gn python -u"
    if recipe["gpu"] > 1:
        return f"torchrun --standalone --nproc_per_node={recipe['gpu']}"
    return "python"


def evaluated_model(config: dict, name: str, date: str) -> dict:
    """An evaluate.models entry as {model, pretrained, checkpoint}: a recipe's entry points at
    this snapshot's checkpoint (then also the rule's input); others name open_clip weights."""
    entry = config["evaluate"]["models"][name]
    if "recipe" not in entry:
        return {**entry, "checkpoint": None}
    if entry["recipe"] not in config["train"]["recipes"]:
        raise ValueError(f"config evaluate.models.{name}: no recipe {entry['recipe']!r} in train.recipes")
    checkpoint = f"{config['models_root']}/{date}/{entry['recipe']}/checkpoint.pt"
    return {"model": config["train"]["recipes"][entry["recipe"]]["model"], "pretrained": checkpoint,
            "checkpoint": checkpoint}
