"""The configuration: config.yaml validated against the schema, whose `default`s are the only
defaults the pipeline has. Stages read their section through `settings()`; rules pass a section
to a stage as a `Section`, which the DVC generator recognises (it names the section as the
stage's params)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlparse

import yaml
from snakemake.utils import validate

from workflow_scripts.common import contracts

SCHEMA = Path(__file__).parent / "schemas" / "config.schema.yaml"


def validated(config: dict) -> dict:
    """Fill in defaults and check against the schema; raises naming the offending key."""
    validate(config, str(SCHEMA), set_default=True)
    return config


def load_config(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return validated(yaml.safe_load(handle) or {})


def settings(section: str, given: dict | None = None) -> dict:
    """One section of the configuration: `given` (a partial section, as config.yaml or --settings
    write it) with the schema's defaults filled in and validated."""
    return validated({section: dict(given or {})})[section]


class Section:
    """A configuration section handed to a stage on its command line (as JSON). A rule's params
    hold it as an object, so the DVC generator can tell which section a stage reads."""

    def __init__(self, config: dict, *path: str):
        self.path = path
        self.value = config
        for key in path:
            self.value = self.value[key]

    def __str__(self) -> str:
        return json.dumps(self.value, sort_keys=True)


def local_path(location: str | None) -> str | None:
    """A location without a URL scheme is a local file or folder (a rule's input); None otherwise."""
    return location if location and not urlparse(location).scheme else None


def memory_mb(text: str) -> int:
    """'4GB', '512MB', '1.5GiB' -> megabytes, for a rule's mem_mb resource."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", text, re.I)
    if not match:
        raise ValueError(f"not a memory size: {text!r} (write e.g. 4GB or 512MB)")
    scale = {"K": 1 / 1024, "": 1 / 1024**2, "M": 1, "G": 1024, "T": 1024**2}[match.group(2).upper()]
    return max(1, round(float(match.group(1)) * scale))


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
    checkpoint = f"{contracts.model(config['models_root'], date, entry['recipe'])}/{contracts.CHECKPOINT}"
    return {"model": config["train"]["recipes"][entry["recipe"]]["model"], "pretrained": checkpoint,
            "checkpoint": checkpoint}
