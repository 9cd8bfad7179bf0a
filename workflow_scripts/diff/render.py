"""The monthly diff for people: report.md (the summary; the full lists are the Parquet files beside
it), images per category in both months and the change, and each model's top-1 on each benchmark
with its interval in both months."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.common.plots import plt, save
from workflow_scripts.common.tables import half_up, markdown

SHOWN = 20  # rows of a list shown in report.md; the Parquet has them all


def short_list(items: list, more_in: str) -> str:
    shown = ", ".join(map(str, items[:SHOWN]))
    return (
        shown
        + (f", … and {len(items) - SHOWN} more (all in {more_in})" if len(items) > SHOWN else "")
        or "none"
    )


def percent(value) -> str:
    return "" if value is None or pd.isna(value) else half_up(100 * Fraction(repr(value)), 1)


def render(report: dict) -> str:
    """report.md: the summary a person reads; the full lists are the Parquet files beside it."""
    species, deleted, licenses = (
        report["species"],
        report["deleted_photos"],
        report["license_changes"],
    )
    stability = report["split_stability"]
    lines = [
        f"# iNaturalist {report['previous']} → {report['current']}: what changed",
        "",
        "## Data",
        "",
        f"- Species (species-rank taxa in the curated table): {species['previous']:,} → "
        f"{species['current']:,}; added {len(species['added'])}, removed "
        f"{len(species['removed'])}, {species['images_changed']:,} with a changed number of images "
        f"(species_images.parquet).",
        f"- Added: {short_list(species['added'], 'species_images.parquet')}.",
        f"- Removed: {short_list(species['removed'], 'species_images.parquet')}.",
        f"- Deleted photos (ids gone from photos.csv): {deleted['photos']:,}, "
        f"{deleted['in_dataset']:,} of them in the earlier curated table (deleted_photos.parquet).",
        f"- License changes: {licenses['photos']:,} photos (license_changes.parquet).",
        "",
    ]
    raw = pd.DataFrame(
        [
            {
                "table": t,
                "previous rows": report["raw"]["previous"][t]["rows"],
                "current rows": report["raw"]["current"][t]["rows"],
                "rejected lines": report["raw"]["previous"][t]["rejected"]
                + report["raw"]["current"][t]["rejected"],
            }
            for t in report["raw"]["previous"]
        ]
    )
    lines += [
        markdown(
            raw, "Raw tables read (rejected lines are listed in each month's curation report)."
        ),
        "",
    ]
    categories = pd.DataFrame(report["categories"])
    lines += [
        markdown(categories, "Images and species per category (images_per_category.png)."),
        "",
    ]
    if licenses["by_change"]:
        lines += [markdown(pd.DataFrame(licenses["by_change"]), "License changes."), ""]
    inactivated = [
        {
            "taxon": f"{t['name']} ({t['taxon_id']}, {t['rank']})",
            "observations now on": "; ".join(
                f"{r['name'] or 'deleted'} ({r['taxon_id']}): {r['observations']}"
                for r in t["replaced_by"]
            )
            or "none observed",
        }
        for t in report["inactivated_taxa"]
    ]
    lines += (
        [
            markdown(
                pd.DataFrame(inactivated[:SHOWN]),
                f"Taxa that became inactive ({len(inactivated)}) and what their observations are "
                f"now identified as (inactivated_taxa.parquet).",
            )
        ]
        if inactivated
        else ["No taxon became inactive."]
    ) + [""]
    lines += [
        "## Split stability",
        "",
        f"{stability['moved']:,} of {stability['photos_in_both']:,} photos in both curated tables "
        f"changed subset or split (moved.parquet); expected only where a species crossed a "
        f"threshold: {json.dumps(stability['by_reason'], sort_keys=True)}.",
        "",
    ]
    if report["moved"]:
        moved = (
            pd.DataFrame(report["moved"])
            .groupby(["species", "reason"], dropna=False)
            .size()
            .rename("photos")
            .reset_index()
            .sort_values(["photos", "species"], ascending=[False, True])
        )
        lines += [
            markdown(
                moved.head(SHOWN), "Photos that moved, by species (each photo: moved.parquet)."
            ),
            "",
        ]
    lines += ["## Benchmarks", ""]
    bench = pd.DataFrame(
        [
            {
                "benchmark": name,
                "previous images": b["previous_images"],
                "current images": b["current_images"],
                "entered": b["entered"],
                "left": b["left"],
                "species added": short_list(b["species_added"], "benchmark_species.parquet"),
                "species removed": short_list(b["species_removed"], "benchmark_species.parquet"),
            }
            for name, b in report["benchmarks"].items()
        ]
    )
    lines += [markdown(bench, "Benchmark membership (Train: its test split)."), ""]
    if "images" in report:
        lines += images_section(report["images"])
    lines += ["## Results", ""]
    if report["results"]:
        results = pd.DataFrame(
            [
                {
                    "model": r["model"],
                    "benchmark": r["benchmark"],
                    "metric": r["metric"],
                    "previous %": percent(r["previous"]),
                    "current %": percent(r["current"]),
                    "delta (points)": percent(r["delta"]),
                    "95% intervals overlap": {True: "yes", False: "NO", None: ""}[r["cis_overlap"]],
                }
                for r in report["results"]
            ]
        )
        lines += [
            markdown(results, "Each model on each benchmark (results.png); intervals are Wilson's.")
        ]
    else:
        lines += ["No evaluations given."]
    return "\n".join(lines) + "\n"


def images_section(store: dict) -> list[str]:
    """What the current snapshot's downloads took from the image store and what it left."""
    month, before, after = store["month"], store["before"], store["after"]
    sizes = pd.DataFrame(
        [
            {
                "store": side,
                "images": size["entries"],
                "packs": size["packs"],
                "GB in packs": f"{size['pack_bytes'] / 1e9:.3f}",
            }
            for side, size in (("before", before), ("after", after))
        ]
    )
    return [
        "## Images",
        "",
        f"- Reused from the image store: {month['reused']:,}; downloaded, new: "
        f"{month['downloaded']:,}; downloaded again, changed (a new width, height or rendition "
        f"under the same photo id: rotated, replaced): {month['redownloaded']:,}.",
        f"- Used by the earlier snapshot and not by this one (deleted, or dropped from the "
        f"subsets): {store['unused']:,}; entries the store no longer keeps "
        f"(images.store_snapshots): {store['expired']:,}.",
        "",
        markdown(sizes, "The image store before and after this snapshot."),
        "",
    ]


def category_figure(categories: list[dict], months: tuple[str, str], path: Path) -> None:
    """Images per category in both months, and the change (small beside the totals, so drawn
    apart)."""
    names = [c["category"] for c in categories]
    x = np.arange(len(names))
    fig, (totals, change) = plt.subplots(1, 2, figsize=(2.4 + 1.5 * len(names), 3.6))
    for offset, side, month in ((-0.2, "previous", months[0]), (0.2, "current", months[1])):
        totals.bar(x + offset, [c[f"{side}_images"] for c in categories], width=0.4, label=month)
    differences = [c["current_images"] - c["previous_images"] for c in categories]
    change.bar(x, differences, color=["tab:green" if d >= 0 else "tab:red" for d in differences])
    change.axhline(0, color="black", linewidth=0.8)
    totals.set_ylabel("images")
    change.set_ylabel(f"images {months[1]} minus {months[0]}")
    for ax in (totals, change):
        ax.set_xticks(x, names, rotation=30, ha="right")
    totals.legend(frameon=False)
    fig.tight_layout()
    save(fig, path)


def results_figure(results: list[dict], months: tuple[str, str], path: Path) -> None:
    rows = [
        r for r in results if r["metric"] == "top1" and r["previous_ci95"] and r["current_ci95"]
    ]
    labels = [f"{r['model']}\n{r['benchmark']}" for r in rows]
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * max(len(rows), 1), 3.6))
    x = np.arange(len(rows))
    for offset, side, month in ((-0.15, "previous", months[0]), (0.15, "current", months[1])):
        values = np.array([r[side] for r in rows])
        bounds = np.array([r[f"{side}_ci95"] for r in rows]).reshape(-1, 2)
        ax.errorbar(
            x + offset,
            values,
            yerr=[values - bounds[:, 0], bounds[:, 1] - values],
            fmt="o",
            capsize=3,
            label=month,
        )
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("zero-shot top-1 (95% Wilson interval)")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False)
    fig.tight_layout()
    save(fig, path)
