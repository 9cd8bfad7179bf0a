"""The configuration: config.yaml validated against the schema, whose `default`s are the only
defaults the pipeline has. Stages read their section through `settings()`; rules pass a section
to a stage as a `Section`, which the DVC generator recognises (it names the section as the
stage's params)."""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path
from urllib.parse import urlparse

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import best_match

from workflow_scripts.common import contracts

SCHEMA = Path(__file__).parent / "schemas" / "config.schema.yaml"
# libyaml's parser where PyYAML has it: the same objects as yaml.safe_load, ten times faster (the
# schema is read by every Snakemake start and every stage process)
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ConfigError(ValueError):
    """A configuration the pipeline cannot run: the message names the key and what is wrong."""


def _filling_defaults(check_properties):
    """The schema's `properties` check, first filling in each missing property's default (a
    copy)."""

    def check(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, properties, instance, schema)

    return check


_VALIDATOR = validators.extend(
    Draft202012Validator,
    {"properties": _filling_defaults(Draft202012Validator.VALIDATORS["properties"])},
)(
    yaml.load(SCHEMA.read_text(encoding="utf-8"), Loader=YAML_LOADER),
    format_checker=Draft202012Validator.FORMAT_CHECKER,
)


# Keys renamed, per section (old: new): the old name is still read, with a warning (CHANGELOG.md),
# and shards_report.json records the settings under it (images/shards.py: its bytes stay the same)
RENAMED = {"shards": {"chunk_size": "window_size", "part_size": "segment_size"}}


def _renamed(config: dict) -> dict:
    """The configuration with renamed keys under their new names (in place)."""
    for section, renames in RENAMED.items():
        values = config.get(section)
        for old, new in renames.items() if isinstance(values, dict) else ():
            if old not in values:
                continue
            if new in values:
                raise ConfigError(f"config {section}: {old} and {new} both given: keep {new}")
            warnings.warn(
                f"config {section}.{old} is deprecated: write {section}.{new}",
                FutureWarning,
                stacklevel=3,
            )
            values[new] = values.pop(old)
    return config


def _key(path) -> str:
    """A config key as written in messages: train.run[0], evaluate.models.tiny-cpu.recipe."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(
        "."
    )


def _choices(names) -> str:
    return ", ".join(sorted(map(str, names)))


def _schema_checked(config: dict) -> dict:
    """Fill in the schema's defaults and check against it, dates as real calendar dates (format:
    date)."""
    error = best_match(_VALIDATOR.iter_errors(config))
    if error is None:
        return config
    if error.validator == "enum":
        problem = f"{error.instance!r} is not allowed (choices: {_choices(error.validator_value)})"
    elif error.validator == "format":
        problem = f"{error.instance!r} is not a real {error.validator_value} (YYYY-MM-DD)"
    else:
        problem = error.message
    if (
        error.parent is not None and "description" in error.parent.schema
    ):  # one of several forms: say which
        problem += f" (allowed: {error.parent.schema['description'].strip()})"
    raise ConfigError(f"config {_key(error.absolute_path) or '(top level)'}: {problem}")


def _check_names(config: dict) -> None:
    """Names that must be defined elsewhere in the config: recipes trained or evaluated must be
    train.recipes' keys, Table 8's benchmark one of evaluate.benchmarks; an external benchmark's
    name must not be one of ours."""
    recipes = config["train"]["recipes"]
    for name in config["train"]["run"]:
        if name not in recipes:
            raise ConfigError(
                f"config train.run: no recipe {name!r} in train.recipes (choices: "
                f"{_choices(recipes)})"
            )
    for model, entry in config["evaluate"]["models"].items():
        if "recipe" in entry and entry["recipe"] not in recipes:
            raise ConfigError(
                f"config evaluate.models.{model}.recipe: no recipe {entry['recipe']!r} in "
                f"train.recipes (choices: {_choices(recipes)})"
            )
    benchmarks = config["evaluate"]["benchmarks"]
    taken = sorted(set(config["evaluate"]["external"]) & {*contracts.SUBSETS, contracts.TRAIN_TEST})
    if taken:
        raise ConfigError(
            f"config evaluate.external: {taken[0]!r} is the name of one of our benchmarks: "
            f"rename it"
        )
    _check_genus_sampled(config)
    if config["evaluate"]["levels_benchmark"] not in benchmarks:
        raise ConfigError(
            f"config evaluate.levels_benchmark: {config['evaluate']['levels_benchmark']!r} is not "
            f"in evaluate.benchmarks (choices: {_choices(benchmarks)})"
        )


def _check_genus_sampled(config: dict) -> None:
    """genus_sampled's categories are subsets.categories' names and its filter names whole genera; a
    list may name the subset only when genera are drawn (else it is empty: nothing to shard,
    evaluate or export)."""
    subsets = config["subsets"]
    unknown = sorted(set(subsets["genus_sampled"]["categories"]) - set(subsets["categories"]))
    if unknown:
        raise ConfigError(
            f"config subsets.genus_sampled.categories: {unknown[0]!r} is not in subsets.categories "
            f"(choices: {_choices(subsets['categories'])})"
        )
    if any(taxon["rank"] == "species" for taxon in subsets["genus_sampled"]["include"]):
        raise ConfigError(
            "config subsets.genus_sampled.include: a species would take part of a genus: name a "
            "genus or a higher taxon"
        )
    if subsets["genus_sampled"]["genera"]:
        return
    for key, listed in (
        ("images.subsets", config["images"]["subsets"]),
        ("evaluate.benchmarks", config["evaluate"]["benchmarks"]),
        ("export.inat2021", config["export"]["inat2021"]),
    ):
        if contracts.GENUS_SAMPLED in listed:
            raise ConfigError(
                f"config {key}: {contracts.GENUS_SAMPLED} is listed but "
                f"subsets.genus_sampled.genera is 0 (none drawn): set it to a count or a fraction "
                f"of genera, or remove it from the list"
            )


def check_shot_bands(edges: list[int]) -> None:
    """evaluate.shot_bands: lower edges from 1 up, increasing."""
    if edges[0] != 1 or any(low >= high for low, high in zip(edges, edges[1:])):
        raise ConfigError(
            f"config evaluate.shot_bands: {edges} does not start at 1 and increase: list each "
            f"band's lowest number of Train images, from 1 up (0, absent from Train, is a band "
            f"of its own)"
        )


def validated(config: dict) -> dict:
    """The whole configuration: defaults filled in, checked against the schema, then the names it
    refers to (_check_names) and the shot bands' order; raises ConfigError naming the offending
    key."""
    _check_names(_schema_checked(_renamed(config)))
    check_shot_bands(config["evaluate"]["shot_bands"])
    return config


def load_config(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return validated(yaml.load(handle, Loader=YAML_LOADER) or {})


def settings(section: str, given: dict | None = None) -> dict:
    """One section of the configuration: `given` (a partial section, as config.yaml or --settings
    write it) with the schema's defaults filled in and checked against the schema. Names that point
    into other sections are checked on the whole config (`validated`): here the others are
    defaults."""
    return _schema_checked(_renamed({section: dict(given or {})}))[section]


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
    """A location without a URL scheme is a local file or folder (a rule's input); None
    otherwise."""
    return location if location and not urlparse(location).scheme else None


def memory_mb(text: str) -> int:
    """'4GB', '512MB', '1.5GiB' -> megabytes, for a rule's mem_mb resource."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?)i?B?\s*", text, re.I)
    if not match:
        raise ValueError(f"not a memory size: {text!r} (write e.g. 4GB or 512MB)")
    scale = {"K": 1 / 1024, "": 1 / 1024**2, "M": 1, "G": 1024, "T": 1024**2}[
        match.group(2).upper()
    ]
    return max(1, round(float(match.group(1)) * scale))


MASTER_PORTS = (
    20000,
    10000,
)  # the multi-node rendezvous port: 20000 + SLURM_JOB_ID % 10000 (below Linux's
# ephemeral ports, 32768 up; one per job, so two jobs sharing a node do not collide)


def slurm_rendezvous() -> str:
    """The environment srun's tasks need to find each other (open_clip's SLURM recipe):
    open_clip_train joins its process group by env://, which reads MASTER_ADDR (the allocation's
    first host, as `scontrol show hostnames` lists SLURM_JOB_NODELIST) and MASTER_PORT
    (MASTER_PORTS, from the job id). Shell assignments for the srun command they prefix; srun passes
    them to every task."""
    base, span = MASTER_PORTS
    return (
        'MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)'
        f" MASTER_PORT=$(({base} + SLURM_JOB_ID % {span}))"
    )


def train_launcher(recipe: dict) -> str:
    """How the train rule starts workflow_scripts.train: one process; torchrun with one process per
    GPU on one node; or, across nodes, srun with one task per GPU (open_clip's SLURM recipe: each
    task reads its rank from SLURM's environment, and finds rank 0 at slurm_rendezvous()'s
    address)."""
    if recipe["nodes"] > 1:
        return (
            f"{slurm_rendezvous()} srun --ntasks-per-node={max(1, recipe['gpu'])} --cpu-bind=v "
            f"--accel-bind=gn python -u"
        )
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
        raise ValueError(
            f"config evaluate.models.{name}: no recipe {entry['recipe']!r} in train.recipes"
        )
    checkpoint = (
        f"{contracts.model(config['models_root'], date, entry['recipe'])}/{contracts.CHECKPOINT}"
    )
    return {
        "model": config["train"]["recipes"][entry["recipe"]]["model"],
        "pretrained": checkpoint,
        "checkpoint": checkpoint,
    }
