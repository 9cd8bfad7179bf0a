"""The paper's evaluation tables and figures for one snapshot, from the evaluations' metrics.json
(no model is run: rebuilding the tables reads only what evaluate cached).

    python -m workflow_scripts.evaluate.paper_tables --metrics results/<date>/eval/*/metrics.json \
        --models tiny-cpu random-init --out results/<date>/paper_tables [--config config.yaml]

Tables (CSV, Markdown, LaTeX): table5_zero_shot (models x benchmarks, top-1 with 95% Wilson
intervals, class-weighted average), table8_levels (top-1 per taxonomic level and name mode),
table9_top1_top5 (benchmarks x models' top-1/top-5) and conformal_sets (coverage, macro-coverage
and set size at the configured alpha). Figures: zero_shot_accuracy.png and conformal_set_size.png
(mean set size against coverage). metrics.json: top-1/top-5 per model and benchmark (DVC metrics).
The settings are config.yaml's `evaluate` section; what made the tables is in the provenance
beside the folder.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import pandas as pd

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.benchmarks import FULL_NAMES, NAME_MODES, abbreviations
from workflow_scripts.common.config import settings as evaluate_settings
from workflow_scripts.common.files import building, write_json
from workflow_scripts.common.plots import plt, save
from workflow_scripts.common.tables import (
    ROUNDING,
    half_up,
    percent_with_interval,
    write_table,
)

MODE_HEADINGS = {
    "scientific": "Scientific",
    "common": "Common",
    "taxonomic": "Taxonomic",
    "scientific_common": "Scientific + common",
}
METHOD_NAMES = {
    "softmax": "softmax (marginal)",
    "class_conditional": "class-conditional",
    "pas": "PAS (macro)",
    "wpas": "weighted PAS",
}


def accuracy(scored: dict, k: int = 1) -> Fraction:
    """Top-k accuracy, exactly, from the hit count."""
    return Fraction(scored[f"top{k}_hits"], scored["images"])


def weighted_top1(benchmarks: dict) -> Fraction:
    """The paper's weighted average: each benchmark's top-1 weighted by its number of classes."""
    return sum(accuracy(b) * b["classes"] for b in benchmarks.values()) / sum(
        b["classes"] for b in benchmarks.values()
    )


def table5(
    results: dict[str, dict], names: list[str], abbreviations: dict[str, str]
) -> pd.DataFrame:
    """Models x benchmarks: top-1 % ± half the width of its 95% Wilson interval; weighted
    average."""
    rows = []
    for model, result in results.items():
        scored = result["benchmarks"]
        row = {"Model": model}
        for name in names:
            row[f"{abbreviations[name]} (n={scored[name]['classes']})"] = percent_with_interval(
                scored[name]["top1_hits"], scored[name]["images"], scored[name]["top1_ci95"]
            )
        rows.append(row | {"Weighted Avg.": half_up(100 * weighted_top1(scored), 1)})
    return pd.DataFrame(rows)


def table8(results: dict[str, dict]) -> pd.DataFrame:
    """(model, level) x name mode: top-1 % on the levels benchmark."""
    rows = []
    for model, result in results.items():
        by_level: dict[str, dict] = {}
        for record in result["levels"]:
            by_level.setdefault(
                record["level"],
                {"Model": model, "Level": record["level"], "classes": record["classes"]},
            )
            by_level[record["level"]][MODE_HEADINGS[record["name_mode"]]] = half_up(
                100 * accuracy(record), 1
            )
        rows += by_level.values()
    return pd.DataFrame(
        rows, columns=["Model", "Level", "classes", *(MODE_HEADINGS[m] for m in NAME_MODES)]
    )


def table9(results: dict[str, dict], names: list[str], full_names: dict[str, str]) -> pd.DataFrame:
    """Benchmarks x (model top-1, model top-5), fractions to 4 decimals as the paper prints them."""
    frame = pd.DataFrame({"Benchmark": [full_names[name] for name in names]})
    for model, result in results.items():
        for k in (1, 5):
            frame[f"{model} Top-{k}"] = [
                half_up(accuracy(result["benchmarks"][n], k), 4) for n in names
            ]
    return frame


def conformal_table(
    results: dict[str, dict], alpha: float, abbreviations: dict[str, str]
) -> pd.DataFrame:
    rows = [
        {
            "Model": model,
            "Benchmark": abbreviations[r["benchmark"]],
            "Method": METHOD_NAMES[r["method"]],
            "coverage %": half_up(100 * r["coverage"], 1),
            "macro-coverage %": half_up(100 * r["macro_coverage"], 1),
            "mean set size": half_up(r["mean_set_size"], 2),
            "calibration/test images": f"{r['calibration_images']}/{r['test_images']}",
        }
        for model, result in results.items()
        for r in result["conformal"]
        if r["alpha"] == alpha
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "Model",
            "Benchmark",
            "Method",
            "coverage %",
            "macro-coverage %",
            "mean set size",
            "calibration/test images",
        ],
    )


def accuracy_figure(
    results: dict[str, dict], names: list[str], abbreviations: dict[str, str], path: Path
) -> None:
    fig, ax = plt.subplots(figsize=(1.4 + 1.2 * len(names), 3.6))
    width = 0.8 / len(results)
    for number, (model, result) in enumerate(results.items()):
        scored = [result["benchmarks"][n] for n in names]
        values = [100 * s["top1"] for s in scored]
        errors = [
            [100 * (s["top1"] - s["top1_ci95"][0]) for s in scored],
            [100 * (s["top1_ci95"][1] - s["top1"]) for s in scored],
        ]
        ax.bar(
            [i + number * width for i in range(len(names))],
            values,
            width,
            yerr=errors,
            capsize=3,
            label=model,
        )
    ax.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(names))], [abbreviations[n] for n in names]
    )
    ax.set_ylabel("zero-shot top-1 % (95% Wilson)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def conformal_figure(
    results: dict[str, dict],
    names: list[str],
    abbreviations: dict[str, str],
    alpha: float,
    path: Path,
) -> None:
    """Per model and benchmark: mean set size against coverage (solid) and macro-coverage (dashed)
    as alpha varies, one colour per method."""
    fig, axes = plt.subplots(
        len(results), len(names), figsize=(3 * len(names), 2.6 * len(results)), squeeze=False
    )
    for row, (model, result) in enumerate(results.items()):
        for column, name in enumerate(names):
            ax = axes[row][column]
            for colour, method in zip(
                ("tab:blue", "tab:orange", "tab:green", "tab:red"), METHOD_NAMES
            ):
                points = sorted(
                    (r["alpha"], r)
                    for r in result["conformal"]
                    if r["benchmark"] == name and r["method"] == method
                )
                if points:
                    sizes = [r["mean_set_size"] for _, r in points]
                    ax.plot(
                        [r["coverage"] for _, r in points],
                        sizes,
                        "o-",
                        color=colour,
                        ms=3,
                        label=METHOD_NAMES[method],
                    )
                    ax.plot(
                        [r["macro_coverage"] for _, r in points], sizes, "x--", color=colour, ms=3
                    )
            ax.axvline(1 - alpha, color="grey", lw=0.8)
            ax.set_yscale("log")
            ax.set_title(f"{model}: {abbreviations[name]}", fontsize=9)
            ax.set_xlabel("coverage (dashed: macro)", fontsize=8)
            ax.set_ylabel("mean set size", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


def paper_tables(
    metrics: list[Path], models: list[str], out: Path, settings: dict | None = None
) -> None:
    """The tables, figures and summary of the models' evaluations (`metrics`, in `models`' order)
    into the folder `out`; `settings`: config.yaml's `evaluate` section."""
    settings = evaluate_settings("evaluate", settings)
    results = {
        model: json.loads(path.read_text()) for model, path in zip(models, metrics, strict=True)
    }
    short_names = abbreviations(settings)
    full_names = FULL_NAMES | {n: n for n in settings["external"]}
    alpha, names = settings["conformal"]["alpha"], contracts.benchmark_names(settings)
    table5_name, table8_name, table9_name, conformal_name = contracts.PAPER_TABLES
    accuracy_name, conformal_figure_name = contracts.PAPER_FIGURES
    with building(out) as staging:
        write_table(
            table5(results, names, short_names),
            staging / table5_name,
            "Zero-shot top-1 accuracy (%) per benchmark (n: classes) ± half the width of its 95% "
            "Wilson score interval; Weighted Avg.: each benchmark weighted by its "
            "classes. " + ROUNDING,
            tex=True,
        )
        write_table(
            table8(results),
            staging / table8_name,
            f"Zero-shot top-1 accuracy (%) on {full_names[settings['levels_benchmark']]} per "
            f"taxonomic level and class-name mode. Common names exist for species only; other "
            f"levels use scientific names. " + ROUNDING,
            tex=True,
        )
        write_table(
            table9(results, names, full_names),
            staging / table9_name,
            "Zero-shot top-1 and top-5 accuracy per benchmark (fractions). " + ROUNDING,
            tex=True,
        )
        write_table(
            conformal_table(results, alpha, short_names),
            staging / conformal_name,
            f"Conformal prediction sets at alpha = {alpha}: coverage, macro-coverage (weighted for "
            f"weighted PAS) and mean set size on the test part; thresholds from the calibration "
            f"part. Class-conditional thresholds need about 1/alpha calibration images per class; "
            f"with fewer, a class is always in the set. " + ROUNDING,
            tex=True,
        )
        accuracy_figure(results, names, short_names, staging / accuracy_name)
        conformal_figure(results, names, short_names, alpha, staging / conformal_figure_name)
        write_json(
            staging / contracts.METRICS,
            {
                model: {
                    **{
                        name: {"top1": s["top1"], "top5": s["top5"]}
                        for name, s in r["benchmarks"].items()
                    },
                    "weighted_average_top1": r["weighted_average_top1"],
                }
                for model, r in results.items()
            },
        )


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="evaluate")
    parser.add_argument(
        "--metrics",
        type=Path,
        nargs="+",
        required=True,
        help="each model's evaluation metrics.json",
    )
    parser.add_argument(
        "--models", nargs="+", required=True, help="the models' names (the table rows), in order"
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=args.metrics) as settings:
        paper_tables(args.metrics, args.models, args.out, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
