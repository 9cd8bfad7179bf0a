from pathlib import Path

from snakemake.utils import validate

from workflow_scripts.config import (
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
    subset="|".join(SUBSETS),
    recipe="|".join(config["train"]["recipes"]),


def recipe(wildcards) -> dict:
    """The train rule's recipe (config train.recipes)."""
    return config["train"]["recipes"][wildcards.recipe]


def previous_snapshot(wildcards):
    """The snapshot folder before this one in the configured list (the stability rule compares them)."""
    earlier = sorted(d for d in SNAPSHOTS if d < wildcards.date)
    if not earlier:
        raise ValueError(f"no snapshot before {wildcards.date} in config snapshots: nothing to compare")
    folder = f"{DATA}/snapshots/{earlier[-1]}"
    return {"previous_curated": f"{folder}/curated", "previous_subsets": f"{folder}/subsets"}
