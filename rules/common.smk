import json
import re
import shlex
from pathlib import Path

from workflow_scripts.common import contracts
from workflow_scripts.common.config import (
    Section,
    evaluated_model,
    local_path,
    memory_mb,
    train_launcher,
    validated,
)

# the schema (defaults filled in, real dates) and the names it refers to
validated(config)

DATA = config["data_root"]
LOGS = config["logs_root"]
RESULTS = config["results_root"]
MODELS = config["models_root"]
SAMPLE = contracts.sample(DATA)
SNAPSHOT = contracts.snapshot(DATA)  # data/snapshots/{date}
IMAGES = contracts.images(SNAPSHOT)  # data/snapshots/{date}/images/{subset}
STORE = contracts.image_store(DATA)  # data/store: the images every snapshot downloaded
SUBSETS = contracts.SUBSETS
EVALUATED = list(config["evaluate"]["models"])  # the tables' rows, in order


wildcard_constraints:
    date=r"\d{4}-\d{2}-\d{2}",
    previous=r"\d{4}-\d{2}-\d{2}",
    current=r"\d{4}-\d{2}-\d{2}",
    subset="|".join(SUBSETS),
    recipe="|".join(config["train"]["recipes"]),
    model="|".join(re.escape(name) for name in EVALUATED),
    chunk=r"\d{5}",
    part=r"\d{5}",
    shard_set="|".join((*contracts.TRAIN_SPLITS, contracts.WHOLE)),
    benchmark="|".join(
        re.escape(name) for name in contracts.benchmark_names(config["evaluate"])
    ),


def provenance(output: str):
    """An output's provenance file (beside it), shown in the report."""
    return report(
        contracts.provenance(output),
        caption="../report/provenance.rst",
        category="Provenance",
    )


def local_input(location: str | None) -> list[str]:
    """A configured location that is a local file or folder (the sample's, or a user's copy) is a
    rule input, so the rule that makes it runs first; a URL is not."""
    return [path for path in [local_path(location)] if path]


def latest_resolution(wildcards=None) -> list[str]:
    """The checkpoint's answer to what `latest` is, when snapshots ask for it."""
    return (
        [checkpoints.latest_snapshot.get().output[0]]
        if "latest" in config["snapshots"]
        else []
    )


def resolved_latest() -> list[str]:
    """The date `latest` resolved to (none when snapshots do not ask for it)."""
    return [
        json.loads(Path(path).read_text())["snapshot"] for path in latest_resolution()
    ]


def dates() -> list[str]:
    """The configured snapshots as dates: `latest` is resolved by the latest_snapshot checkpoint
    when the workflow runs, never while it is planned."""
    return sorted(
        {spec for spec in config["snapshots"] if spec != "latest"}
        | set(resolved_latest())
    )


def snapshot_spec(wildcards) -> str:
    """What fetch is asked for: `latest` for the date it resolved to, else the date."""
    return "latest" if wildcards.date in resolved_latest() else wildcards.date


def recipe(wildcards) -> dict:
    """The train rule's recipe (config train.recipes)."""
    return config["train"]["recipes"][wildcards.recipe]


def output_folder(wildcards, output) -> str:
    """A job's output folder: the one its provenance sits beside."""
    return contracts.provenance_target(output.provenance)


def benchmark_files(date: str, names: list[str]) -> dict:
    """What benchmarks are read from: our subsets' shards folders and tables (`shards` and `tables`,
    in the same order), the external benchmarks' metadata (`external`)."""
    snapshot = contracts.snapshot(DATA, date)
    ours = [name for name in names if name in config["evaluate"]["benchmarks"]]
    return {
        "shards": [contracts.shards(snapshot, name) for name in ours],
        "tables": [contracts.subset_table(snapshot, name) for name in ours],
        "external": [
            config["evaluate"]["external"][name]["metadata"]
            for name in names
            if name not in ours
        ],
    }


def benchmark_shards(wildcards) -> dict:
    """The evaluate rule's inputs: every benchmark's files and the model's checkpoint when it is
    this run's."""
    inputs = benchmark_files(
        wildcards.date, contracts.benchmark_names(config["evaluate"])
    )
    trained = evaluated_model(config, wildcards.model, wildcards.date)["checkpoint"]
    return inputs | ({"checkpoint": trained} if trained else {})


def exported_benchmark(wildcards) -> dict:
    return benchmark_files(wildcards.date, [wildcards.benchmark])


def evaluated(wildcards) -> dict:
    return evaluated_model(config, wildcards.model, wildcards.date)


def pretrained_option(wildcards) -> str:
    pretrained = evaluated(wildcards)["pretrained"]
    return f"--pretrained {shlex.quote(pretrained)}" if pretrained else ""


def compared_inputs(wildcards) -> dict:
    """Both snapshots' raw tables, curated table, species table and subsets' tables (`<side>_subsets`,
    a list), and each configured model's metrics."""
    inputs = {}
    for side in ("previous", "current"):
        files = contracts.compared_files(contracts.snapshot(DATA, wildcards[side]))
        inputs |= {f"{side}_{name}": path for name, path in files.items()}
        inputs[f"{side}_metrics"] = [
            f"{contracts.evaluation(RESULTS, wildcards[side], model)}/{contracts.METRICS}"
            for model in EVALUATED
        ]
    return inputs


def final_outputs(wildcards) -> list[str]:
    """Every snapshot's statistics, data card, subset tables (and the genus-sampled subset's long
    tail when genera are drawn) and overlap check, shards, models, evaluation tables and exports, and
    each snapshot diffed against the one before it.
    """
    snapshots = dates()
    per_date = [
        rules.stats.output.stats,
        rules.subset_tables.output.provenance,
        *(
            [rules.genus_sampled_long_tail.output.table]
            if config["subsets"]["genus_sampled"]["genera"]
            else []
        ),
        rules.check_overlap.output.report,
        rules.store_index.output.index,
        *expand(
            rules.shards.output.shards,
            subset=config["images"]["subsets"],
            allow_missing=True,
        ),
        *expand(
            rules.train.output.checkpoint,
            recipe=config["train"]["run"],
            allow_missing=True,
        ),
        rules.paper_tables.output.summary,
        rules.shot_bands.output.table,
        rules.data_card.output.card,
        *(
            expand(
                rules.clip_benchmark_export.output.export,
                benchmark=contracts.benchmark_names(config["evaluate"]),
                allow_missing=True,
            )
            if config["export"]["clip_benchmark"]
            else []
        ),
        *expand(
            rules.inat_export.output.export,
            subset=config["export"]["inat2021"],
            allow_missing=True,
        ),
    ]
    pairs = [
        rules.diff.output.report.format(previous=a, current=b)
        for a, b in zip(snapshots, snapshots[1:])
    ]
    return expand(per_date, date=snapshots) + pairs


def subset_report(date: str, subset: str) -> dict:
    """A subset's entry in the subsets checkpoint's report: the image jobs follow its row counts."""
    counts = checkpoints.subsets.get(date=date).output.report
    return json.loads(Path(counts).read_text())["subsets"][subset]


def chunk_folders(date: str, subset: str) -> list[str]:
    """A subset's chunk folders: one download job each."""
    folder = IMAGES.format(date=date, subset=subset)
    chunks = contracts.url_chunks(
        subset_report(date, subset)["images"], config["images"]
    )
    return [
        contracts.chunk_folder(folder, contracts.chunk_name(n)) for n in range(chunks)
    ]


def downloaded_chunks(wildcards) -> list[str]:
    return chunk_folders(wildcards.date, wildcards.subset)


def previous_store_index(wildcards) -> list[str]:
    """The image store's index after the configured snapshot before this one: what this one's
    downloads may reuse (none for the first snapshot)."""
    earlier = [date for date in dates() if date < wildcards.date]
    return [contracts.store_index(STORE, earlier[-1])] if earlier else []


def previous_index_option(wildcards, input) -> str:
    """The store index option of a job whose `previous` input is previous_store_index."""
    return (
        f"--previous-index {shlex.quote(input.previous[0])}" if input.previous else ""
    )


def every_subsets_chunks(wildcards) -> list[str]:
    return [
        chunk for subset in SUBSETS for chunk in chunk_folders(wildcards.date, subset)
    ]


def shard_parts(wildcards) -> list[str]:
    """A subset's shard parts: one shard job each, as many per shard set (Train's splits) as its
    rows could fill."""
    folder = IMAGES.format(date=wildcards.date, subset=wildcards.subset)
    counts = subset_report(wildcards.date, wildcards.subset)
    rows = counts.get("splits", {contracts.WHOLE: counts["images"]})
    return [
        contracts.shard_part(folder, shard_set, contracts.chunk_name(n))
        for shard_set in contracts.shard_sets(wildcards.subset)
        for n in range(contracts.shard_parts(rows.get(shard_set, 0), config["shards"]))
    ]
