import re
import shlex
from pathlib import Path

from snakemake.utils import validate

from workflow_scripts.config import (
    evaluated_model,
    fetch_options,
    lifestages_export,
    memory_mb,
    mirror_dir,
    sample_mirror_input,
    snapshot_specs,
    source_location,
    train_launcher,
    uses_sample,
)
from workflow_scripts.diff import LISTS
from workflow_scripts.subsets import SUBSETS


validate(config, "../workflow_scripts/schemas/config.schema.yaml")

DATA = config["data_root"]
LOGS = config["logs_root"]
RESULTS = config["results_root"]
MODELS = config["models_root"]
# {date: "YYYY-MM-DD" or "latest"}: what fetch is asked for to produce each dated snapshot
SNAPSHOTS = snapshot_specs(config)
LIFESTAGES_EXPORT = lifestages_export(config)


wildcard_constraints:
    date=r"\d{4}-\d{2}-\d{2}",
    previous=r"\d{4}-\d{2}-\d{2}",
    current=r"\d{4}-\d{2}-\d{2}",
    subset="|".join(SUBSETS),
    recipe="|".join(config["train"]["recipes"]),
    model="|".join(re.escape(name) for name in config["evaluate"]["models"]),


def recipe(wildcards) -> dict:
    """The train rule's recipe (config train.recipes)."""
    return config["train"]["recipes"][wildcards.recipe]


EVALUATED = list(config["evaluate"]["models"])  # the tables' rows, in order


def evaluation_inputs(wildcards) -> dict:
    """The evaluate rule's inputs: the benchmarks' shards, the model's checkpoint when it is this
    run's, and the external benchmarks' metadata."""
    settings = config["evaluate"]
    folder = f"{DATA}/snapshots/{wildcards.date}/shards"
    inputs = {name: f"{folder}/{name}" for name in settings["benchmarks"]}  # each subset's own shards
    trained = evaluated_model(config, wildcards.model, wildcards.date)["checkpoint"]
    return inputs | ({"checkpoint": trained} if trained else {}) | {
        f"external_{name}": spec["metadata"] for name, spec in settings["external"].items()}


def pretrained_option(wildcards) -> str:
    pretrained = evaluated_model(config, wildcards.model, wildcards.date)["pretrained"]
    return f"--pretrained {shlex.quote(pretrained)}" if pretrained else ""


DIFF_FILES = ["report.json", *(f"{name}.parquet" for name in LISTS)]


def snapshot_pair(wildcards) -> dict:
    """Both snapshots' raw, curated and subsets folders, and each configured model's evaluation."""
    inputs = {}
    for side in ("previous", "current"):
        day = wildcards[side]
        inputs |= {f"{side}_{part}": f"{DATA}/snapshots/{day}/{part}" for part in ("raw", "curated", "subsets")}
        inputs |= {f"{side}_eval_{model}": f"{RESULTS}/{day}/eval/{model}" for model in EVALUATED}
    return inputs
