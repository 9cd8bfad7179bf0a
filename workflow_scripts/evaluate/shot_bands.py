"""Long-tail accuracy: zero-shot top-1 of every model on every benchmark, over classes grouped by
how many images of them a train split holds (the long-tail view of the Pl@ntNet seed), from the
evaluations' cached predictions (no model is run).

    python -m workflow_scripts.evaluate.shot_bands \\
        --train data/snapshots/<date>/subsets/train.parquet \\
        --tables data/snapshots/<date>/subsets/{balanced,unseen,lifestages}.parquet \\
        --models tiny-cpu random-init --out results/<date>/shot_bands [--config config.yaml] \\
        --predictions \\
        results/<date>/eval/{tiny-cpu,random-init}/{train,balanced,unseen,lifestages}.predictions.parquet

--predictions: per model in --models' order, one file per benchmark in the tables' order (ours as
evaluate.benchmarks lists them, then the external ones by name). --train: Train's table; --tables:
each of our benchmarks' table (Train's again when it is one: a table given twice counts once).

A class's band comes from its species' images in a train split: genus_sampled's own (the long
tail it was drawn with; its genera are not in Train), every other benchmark's in Train's, what our
models train on. Our benchmarks' images carry their species (LifeStages' classes are a species at a
life stage), an external benchmark's classes are species when its name mode is `scientific`
(others are left out: nothing ties them to Train). The bands' lower edges are
`evaluate.shot_bands`; species without images in the train split (Unseen's) form the band `absent`.
Per model, benchmark and band: classes, images, top-1 with its 95% Wilson interval and the mean
over classes of their top-1 (shot_band_accuracy.csv/.md/.tex, and .png). The settings are
config.yaml's `evaluate` section.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.benchmarks import SUBSET_BENCHMARKS, abbreviations, external_benchmark
from workflow_scripts.common.config import check_shot_bands
from workflow_scripts.common.config import settings as evaluate_settings
from workflow_scripts.common.duck import quote
from workflow_scripts.common.files import building
from workflow_scripts.common.plots import plt, save
from workflow_scripts.common.tables import ROUNDING, half_up, percent_with_interval, write_table
from workflow_scripts.evaluate.metrics import wilson

ABSENT = "absent"


def band_names(edges: list[int]) -> list[str]:
    """`absent`, then one name per lower edge: 1-19, 20-49, ..., 1000+."""
    return (
        [ABSENT] + [f"{low}-{high - 1}" for low, high in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
    )


def bands(train_images: np.ndarray, edges: list[int]) -> np.ndarray:
    """Each class's band index: 0 when absent from Train, else the band its image count falls in."""
    return np.searchsorted(np.array(edges), train_images, side="right")


def shots_from(benchmark: str) -> str:
    """The subset whose train split bands a benchmark's classes: its own when it has one, else
    Train."""
    return benchmark if benchmark in contracts.SPLIT_SUBSETS else "train"


def scored_images(
    con: duckdb.DuckDBPyConnection,
    name: str,
    predictions: Path,
    tables: dict[str, Path],
    settings: dict,
) -> pd.DataFrame | None:
    """Per image of a benchmark: its class (`label`), whether the model's top-1 hit it and its
    species' images in the train split that bands it; None for an external benchmark whose classes
    are not species."""
    if name in SUBSET_BENCHMARKS:
        species = f"SELECT photo_id, species FROM read_parquet({quote(tables[name])})"
        joined = "USING (photo_id)"
    elif settings["external"][name]["name_mode"] == "scientific":
        names = external_benchmark(
            settings["external"][name]
        ).class_keys  # the labels, as evaluation ordered them
        con.register("class_names", pa.table({"label": np.arange(len(names)), "species": names}))
        species, joined = "SELECT label, species FROM class_names", "USING (label)"
    else:
        return None
    return con.execute(f"""SELECT p.label, p.top_ids[1] = p.label AS hit,
                                  coalesce(c.images, 0) AS train_images
                           FROM read_parquet({quote(predictions)}) AS p
                           JOIN ({species}) AS s {joined}
                           LEFT JOIN train_counts AS c ON c.subset = {quote(shots_from(name))}
                                                      AND c.species = s.species""").df()


def band_rows(images: pd.DataFrame, edges: list[int]) -> list[dict]:
    """Per band with images: classes, images, hits, and the mean over classes of their top-1."""
    images = images.assign(band=bands(images.train_images.to_numpy(), edges))
    rows = []
    for band, found in images.groupby("band", sort=True):
        per_class = found.groupby("label").hit.mean()
        rows.append(
            {
                "band": int(band),
                "classes": len(per_class),
                "images": len(found),
                "hits": int(found.hit.sum()),
                "macro_top1": Fraction(repr(float(per_class.mean()))),
            }
        )
    return rows


def shot_band_table(records: list[dict], names: list[str]) -> pd.DataFrame:
    rows = []
    for r in records:
        rows.append(
            {
                "Model": r["model"],
                "Benchmark": r["benchmark"],
                "train-split images": names[r["band"]],
                "classes": r["classes"],
                "images": r["images"],
                "top-1 %": percent_with_interval(
                    r["hits"], r["images"], wilson(r["hits"], r["images"])
                ),
                "class-mean top-1 %": half_up(100 * r["macro_top1"], 1),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "Model",
            "Benchmark",
            "train-split images",
            "classes",
            "images",
            "top-1 %",
            "class-mean top-1 %",
        ],
    )


def shot_band_figure(
    records: list[dict], models: list[str], benchmarks: list[str], names: list[str], path: Path
) -> None:
    """Per benchmark, top-1 (95% Wilson) against the band, one line per model."""
    fig, axes = plt.subplots(
        1, len(benchmarks), figsize=(0.6 + 2.9 * len(benchmarks), 3.4), sharey=True, squeeze=False
    )
    for ax, benchmark in zip(axes[0], benchmarks):
        for model in models:
            found = [r for r in records if r["model"] == model and r["benchmark"] == benchmark]
            top1 = np.array([r["hits"] / r["images"] for r in found])
            interval = np.array([wilson(r["hits"], r["images"]) for r in found]).reshape(-1, 2)
            ax.errorbar(
                [r["band"] for r in found],
                100 * top1,
                yerr=100 * np.abs(interval.T - top1),
                marker="o",
                ms=4,
                capsize=3,
                label=model,
            )
        ax.set_xticks(range(len(names)), names, rotation=45, fontsize=8)
        ax.set_title(benchmark, fontsize=9)
        ax.set_xlabel("train-split images per class", fontsize=8)
    axes[0][0].set_ylabel("zero-shot top-1 % (95% Wilson)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def needed_tables(settings: dict) -> list[str]:
    """The subsets' tables shot bands read: our benchmarks' and those of the train splits that band
    the benchmarks' classes (Train's always)."""
    names = contracts.benchmark_names(settings)
    return [
        subset
        for subset in contracts.SUBSETS
        if subset in settings["benchmarks"] or subset in {shots_from(name) for name in names}
    ]


def predictions_by_model(
    files: list[Path], models: list[str], settings: dict
) -> dict[str, dict[str, Path]]:
    """{model: {benchmark: its predictions}} from a list holding, per model in `models`' order, one
    predictions file per benchmark in the tables' order (contracts.benchmark_names)."""
    names = contracts.benchmark_names(settings)
    if len(files) != len(models) * len(names):
        raise ValueError(
            f"{len(files)} predictions for {len(models)} models x {len(names)} benchmarks "
            f"({', '.join(names)})"
        )
    grouped = {}
    for number, model in enumerate(models):
        group = dict(zip(names, files[number * len(names) : (number + 1) * len(names)]))
        wrong = next(
            (
                path
                for name, path in group.items()
                if Path(path).name != contracts.predictions(name)
            ),
            None,
        )
        if wrong:
            raise ValueError(
                f"{wrong}: expected model {model}'s predictions of the benchmarks in the order "
                f"{', '.join(contracts.predictions(name) for name in names)}"
            )
        grouped[model] = {name: Path(path) for name, path in group.items()}
    return grouped


def shot_bands(
    tables: dict[str, Path],
    predictions: dict[str, dict[str, Path]],
    out: Path,
    settings: dict | None = None,
) -> list[dict]:
    """The table and figure into the folder `out`; returns the records (one per model, benchmark,
    band). `tables`: {subset: its table} for needed_tables(); `predictions`: {model: {benchmark: its
    predictions file}}, models in the table's order."""
    settings = evaluate_settings("evaluate", settings)
    check_shot_bands(settings["shot_bands"])
    missing = [subset for subset in needed_tables(settings) if subset not in tables]
    if missing:
        raise cli.StageError(
            f"no table of {', '.join(missing)} given: shot bands read "
            f"{', '.join(needed_tables(settings))}"
        )
    edges, names, short = (
        settings["shot_bands"],
        band_names(settings["shot_bands"]),
        abbreviations(settings),
    )
    con = duckdb.connect()
    con.execute(
        "CREATE VIEW train_counts AS "
        + " UNION ALL ".join(
            f"""SELECT {quote(subset)} AS subset, species, count(*) AS images
            FROM read_parquet({quote(tables[subset])}) WHERE split = 'train' GROUP BY species"""
            for subset in contracts.SPLIT_SUBSETS
            if subset in needed_tables(settings)
        )
    )
    records, banded = [], []
    for model, files in predictions.items():
        for name in contracts.benchmark_names(settings):
            images = scored_images(con, name, files[name], tables, settings)
            if images is None:
                print(f"{name}: left out, its classes are not species (name_mode)", file=sys.stderr)
                continue
            banded += [short[name]] if short[name] not in banded else []
            records += [
                {"model": model, "benchmark": short[name], **row}
                for row in band_rows(images, edges)
            ]
    with building(out) as staging:
        write_table(
            shot_band_table(records, names),
            staging / contracts.SHOT_BANDS,
            f"Zero-shot top-1 accuracy (%) over classes grouped by their images in a train split "
            f"(genus_sampled's own, else Train's; {ABSENT}: none, e.g. Unseen's species) ± half "
            f"the width of its 95% Wilson score interval; class-mean: the mean of the "
            f"classes' top-1. " + ROUNDING,
            tex=True,
        )
        shot_band_figure(
            records, list(predictions), banded, names, staging / f"{contracts.SHOT_BANDS}.png"
        )
    return records


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="evaluate")
    parser.add_argument(
        "--train", type=Path, required=True, help="Train's table (subsets/train.parquet)"
    )
    parser.add_argument(
        "--tables",
        type=Path,
        nargs="*",
        default=[],
        help="each of our benchmarks' table (subsets/<subset>.parquet)",
    )
    parser.add_argument(
        "--predictions",
        type=Path,
        nargs="+",
        required=True,
        help="per model in --models' order, its predictions of each benchmark in the tables' order",
    )
    parser.add_argument("--models", nargs="+", required=True, help="the models' names, in order")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    settings = cli.settings(args)
    try:
        tables = contracts.by_subset([args.train, *args.tables])
        if tables.get("train") != str(args.train):
            raise ValueError(
                f"--train {args.train}: not Train's table ({contracts.subset_file('train')})"
            )
        predictions = predictions_by_model(args.predictions, args.models, settings)
    except ValueError as exc:
        parser.error(str(exc))
    external = [Path(spec["metadata"]) for spec in settings["external"].values()]
    with cli.running(
        args, inputs=[*args.predictions, *map(Path, tables.values()), *external]
    ) as settings:
        shot_bands(
            {subset: Path(path) for subset, path in tables.items()}, predictions, args.out, settings
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
