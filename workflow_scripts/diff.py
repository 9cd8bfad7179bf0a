"""What changed between two monthly snapshots, in the data and in the results.

    python -m workflow_scripts.diff --previous data/snapshots/<A> --current data/snapshots/<B> \\
        --previous-eval results/<A>/eval --current-eval results/<B>/eval --models tiny-cpu random-init \\
        --out results/diff/<A>_vs_<B>

Each snapshot folder holds raw/ (the fetched tables), curated/ and subsets/. Writes report.md and
report.json (the summary), one sorted Parquet per list (species_images, inactivated_taxa,
deleted_photos, license_changes, moved, benchmark_species) and two figures: images per category
and each model's top-1 on each benchmark, before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import duckdb
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workflow_scripts.benchmarks import SUBSET_BENCHMARKS
from workflow_scripts.curate import CurateError, find_table, load_table
from workflow_scripts.duck import quote, run_sql
from workflow_scripts.files import building, write_json, write_text
from workflow_scripts.plots import save
from workflow_scripts.subsets import SUBSETS, write_parquet
from workflow_scripts.tables import half_up, markdown

RAW_TABLES = ("photos", "observations", "taxa")
# the Parquet lists: table, sort key (a total order: the same bytes on every run)
LISTS = {"species_images": "species_key", "inactivated_taxa": "taxon_id, replaced_by_id NULLS FIRST",
         "deleted_photos": "photo_id, observation_uuid", "license_changes": "photo_id, observation_uuid",
         "moved": "photo_id", "benchmark_species": "benchmark, species_key"}
METRICS = ("top1", "top5", "macro_top1")
SHOWN = 20  # rows of a list shown in report.md; the Parquet has them all


def load_raw(raw: Path, database: Path, workdir: Path) -> dict:
    """The month's raw tables into a DuckDB file (large months spill to disk); rows read and rejected."""
    con = duckdb.connect(str(database))
    counts = {}
    for table in RAW_TABLES:
        path = find_table(raw, table)
        if path is None:
            raise CurateError(f"{raw}: no {table}.csv.gz or {table}.csv: fetch the snapshot first")
        loaded = load_table(con, table, path, workdir)
        counts[table] = {"rows": loaded["rows"], "rejected": len(loaded["rejects"])}
    con.close()
    return counts


def attach_snapshot(con: duckdb.DuckDBPyConnection, side: str, snapshot: Path) -> None:
    """Views <side>_curated, <side>_species, <side>_placements (photo_id, subset, split) and
    <side>_benchmarks (benchmark, photo_id, species_key; Train's benchmark is its test split)."""
    subsets = snapshot / "subsets"
    con.execute(f"CREATE VIEW {side}_curated AS SELECT * FROM "
                f"read_parquet({quote(snapshot / 'curated' / 'curated.parquet')})")
    con.execute(f"CREATE VIEW {side}_species AS SELECT * FROM read_parquet({quote(subsets / 'species.parquet')})")
    parts = [f"SELECT photo_id, {quote(subset)} AS subset, {'split' if subset == 'train' else 'NULL'} AS split "
             f"FROM read_parquet({quote(subsets / f'{subset}.parquet')}) WHERE photo_id IS NOT NULL"
             for subset in SUBSETS]
    con.execute(f"CREATE VIEW {side}_placements AS {' UNION ALL '.join(parts)}")
    parts = [f"SELECT {quote(name)} AS benchmark, photo_id, taxonomic_name AS species_key "
             f"FROM read_parquet({quote(subsets / f'{subset}.parquet')}) WHERE photo_id IS NOT NULL"
             + (f" AND split = {quote(split)}" if split else "")
             for name, (subset, split, _) in SUBSET_BENCHMARKS.items()]
    con.execute(f"CREATE VIEW {side}_benchmarks AS {' UNION ALL '.join(parts)}")


def intervals_overlap(first: list[float] | None, second: list[float] | None) -> bool | None:
    if not first or not second:
        return None
    return max(first[0], second[0]) <= min(first[1], second[1])


def compared(model: str, benchmark: str, metric: str, old: dict, new: dict) -> dict:
    """One metric in both months (`old`, `new`: the benchmark's metrics, each may lack it)."""
    before, after = old.get(metric), new.get(metric)
    before_ci, after_ci = old.get(f"{metric}_ci95"), new.get(f"{metric}_ci95")
    return {"model": model, "benchmark": benchmark, "metric": metric, "previous": before, "current": after,
            "delta": None if before is None or after is None else round(after - before, 6),
            "previous_ci95": before_ci, "current_ci95": after_ci,
            "cis_overlap": intervals_overlap(before_ci, after_ci)}


def results_diff(previous_eval: Path, current_eval: Path, models: list[str]) -> list[dict]:
    """Each model x benchmark x metric in both months' evaluations: values, delta, and whether the
    95% intervals overlap (an interval that does not is a change beyond sampling noise)."""
    rows = []
    for model in models:
        before, after = (json.loads((folder / model / "metrics.json").read_text())
                         for folder in (previous_eval, current_eval))
        for benchmark in sorted(set(before["benchmarks"]) | set(after["benchmarks"])):
            old, new = before["benchmarks"].get(benchmark, {}), after["benchmarks"].get(benchmark, {})
            rows += [compared(model, benchmark, metric, old, new)
                     for metric in METRICS if metric in old or metric in new]
        rows.append(compared(model, "weighted average", "weighted_average_top1", before, after) | {"metric": "top1"})
    return rows


def records(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    return json.loads(con.execute(sql).df().to_json(orient="records"))


def scalar(con: duckdb.DuckDBPyConnection, sql: str):
    return con.execute(sql).fetchone()[0]


def column(con: duckdb.DuckDBPyConnection, sql: str) -> list:
    return [row[0] for row in con.execute(sql).fetchall()]


def data_diff(con: duckdb.DuckDBPyConnection, out: Path) -> dict:
    """Run diff.sql and stability.sql; write the lists; the JSON summary of the data changes."""
    run_sql(con, "diff.sql")
    run_sql(con, "stability.sql")
    for table, order in LISTS.items():
        write_parquet(con, f"SELECT * FROM {table} ORDER BY {order}", out / f"{table}.parquet")
    species = {change: column(con, f"SELECT species_key FROM species_images WHERE change = '{change}' ORDER BY 1")
               for change in ("added", "removed")}
    inactivated = []
    for taxon in records(con, "SELECT DISTINCT taxon_id, name, rank FROM inactivated_taxa ORDER BY taxon_id"):
        taxon["replaced_by"] = records(con, f"""
            SELECT replaced_by_id AS taxon_id, replaced_by AS name, observations FROM inactivated_taxa
            WHERE taxon_id = {taxon['taxon_id']} AND observations > 0
            ORDER BY observations DESC, replaced_by_id NULLS FIRST""")
        inactivated.append(taxon)
    return {
        "species": {"previous": scalar(con, "SELECT count(*) FROM species_images WHERE previous_images > 0"),
                    "current": scalar(con, "SELECT count(*) FROM species_images WHERE current_images > 0"),
                    **species,
                    "images_changed": scalar(con, "SELECT count(*) FROM species_images WHERE change = 'changed'")},
        "categories": records(con, "SELECT * FROM category_images ORDER BY category"),
        "inactivated_taxa": inactivated,
        "deleted_photos": {"photos": scalar(con, "SELECT count(*) FROM deleted_photos"),
                           "in_dataset": scalar(con, "SELECT count(*) FROM deleted_photos WHERE in_dataset")},
        "license_changes": {
            "photos": scalar(con, "SELECT count(*) FROM license_changes"),
            "by_change": records(con, """SELECT previous_license, current_license, effect, count(*) AS photos
                                         FROM license_changes GROUP BY ALL ORDER BY 1, 2, 3""")},
        "split_stability": {
            "photos_in_both": scalar(con, "SELECT count(*) FROM current_curated SEMI JOIN previous_curated "
                                          "USING (photo_id)"),
            "moved": scalar(con, "SELECT count(*) FROM moved"),
            "by_reason": dict(con.execute("""SELECT regexp_replace(reason, ' \\(.*', ''), count(*) FROM moved
                                             GROUP BY 1 ORDER BY 1""").fetchall())},
        "benchmarks": {r["benchmark"]: {**{k: v for k, v in r.items() if k != "benchmark"}, **{
            f"species_{change}": column(con, f"SELECT species_key FROM benchmark_species WHERE benchmark = "
                                             f"{quote(r['benchmark'])} AND change = '{change}' ORDER BY 1")
            for change in ("added", "removed")}}
            for r in records(con, "SELECT * FROM benchmark_photos ORDER BY benchmark")},
    }


def short_list(items: list, more_in: str) -> str:
    shown = ", ".join(map(str, items[:SHOWN]))
    return shown + (f", … and {len(items) - SHOWN} more (all in {more_in})" if len(items) > SHOWN else "") or "none"


def percent(value) -> str:
    return "" if value is None or pd.isna(value) else half_up(100 * Fraction(repr(value)), 1)


def render(report: dict) -> str:
    """report.md: the summary a person reads; the full lists are the Parquet files beside it."""
    species, deleted, licenses = report["species"], report["deleted_photos"], report["license_changes"]
    stability = report["split_stability"]
    lines = [f"# iNaturalist {report['previous']} → {report['current']}: what changed", "",
             "## Data", "",
             f"- Species (species-rank taxa in the curated table): {species['previous']:,} → {species['current']:,}; "
             f"added {len(species['added'])}, removed {len(species['removed'])}, "
             f"{species['images_changed']:,} with a changed number of images (species_images.parquet).",
             f"- Added: {short_list(species['added'], 'species_images.parquet')}.",
             f"- Removed: {short_list(species['removed'], 'species_images.parquet')}.",
             f"- Deleted photos (ids gone from photos.csv): {deleted['photos']:,}, "
             f"{deleted['in_dataset']:,} of them in the earlier curated table (deleted_photos.parquet).",
             f"- License changes: {licenses['photos']:,} photos (license_changes.parquet).", ""]
    raw = pd.DataFrame([{"table": t, "previous rows": report["raw"]["previous"][t]["rows"],
                         "current rows": report["raw"]["current"][t]["rows"],
                         "rejected lines": report["raw"]["previous"][t]["rejected"]
                         + report["raw"]["current"][t]["rejected"]} for t in RAW_TABLES])
    lines += [markdown(raw, "Raw tables read (rejected lines are listed in each month's curation report)."), ""]
    categories = pd.DataFrame(report["categories"])
    lines += [markdown(categories, "Images and species per category (images_per_category.png)."), ""]
    if licenses["by_change"]:
        lines += [markdown(pd.DataFrame(licenses["by_change"]), "License changes."), ""]
    inactivated = [{"taxon": f"{t['name']} ({t['taxon_id']}, {t['rank']})",
                    "observations now on": "; ".join(
                        f"{r['name'] or 'deleted'} ({r['taxon_id']}): {r['observations']}" for r in t["replaced_by"])
                    or "none observed"} for t in report["inactivated_taxa"]]
    lines += ([markdown(pd.DataFrame(inactivated[:SHOWN]),
                        f"Taxa that became inactive ({len(inactivated)}) and what their observations are now "
                        "identified as (inactivated_taxa.parquet).")] if inactivated
              else ["No taxon became inactive."]) + [""]
    lines += ["## Split stability", "",
              f"{stability['moved']:,} of {stability['photos_in_both']:,} photos in both curated tables changed "
              f"subset or split (moved.parquet); expected only where a species crossed a threshold: "
              f"{json.dumps(stability['by_reason'], sort_keys=True)}.", ""]
    if report["moved"]:
        moved = (pd.DataFrame(report["moved"]).groupby(["species", "reason"], dropna=False).size()
                 .rename("photos").reset_index().sort_values(["photos", "species"], ascending=[False, True]))
        lines += [markdown(moved.head(SHOWN), "Photos that moved, by species (each photo: moved.parquet)."), ""]
    lines += ["## Benchmarks", ""]
    bench = pd.DataFrame([{"benchmark": name, "previous images": b["previous_images"],
                           "current images": b["current_images"], "entered": b["entered"], "left": b["left"],
                           "species added": short_list(b["species_added"], "benchmark_species.parquet"),
                           "species removed": short_list(b["species_removed"], "benchmark_species.parquet")}
                          for name, b in report["benchmarks"].items()])
    lines += [markdown(bench, "Benchmark membership (Train: its test split)."), ""]
    lines += ["## Results", ""]
    if report["results"]:
        results = pd.DataFrame([{"model": r["model"], "benchmark": r["benchmark"], "metric": r["metric"],
                                 "previous %": percent(r["previous"]), "current %": percent(r["current"]),
                                 "delta (points)": percent(r["delta"]),
                                 "95% intervals overlap": {True: "yes", False: "NO", None: ""}[r["cis_overlap"]]}
                                for r in report["results"]])
        lines += [markdown(results, "Each model on each benchmark (results.png); intervals are Wilson's.")]
    else:
        lines += ["No evaluations given."]
    return "\n".join(lines) + "\n"


def category_figure(categories: list[dict], months: tuple[str, str], path: Path) -> None:
    """Images per category in both months, and the change (small beside the totals, so drawn apart)."""
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
    rows = [r for r in results if r["metric"] == "top1" and r["previous_ci95"] and r["current_ci95"]]
    labels = [f"{r['model']}\n{r['benchmark']}" for r in rows]
    fig, ax = plt.subplots(figsize=(1.5 + 0.8 * max(len(rows), 1), 3.6))
    x = np.arange(len(rows))
    for offset, side, month in ((-0.15, "previous", months[0]), (0.15, "current", months[1])):
        values = np.array([r[side] for r in rows])
        bounds = np.array([r[f"{side}_ci95"] for r in rows]).reshape(-1, 2)
        ax.errorbar(x + offset, values, yerr=[values - bounds[:, 0], bounds[:, 1] - values], fmt="o", capsize=3,
                    label=month)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("zero-shot top-1 (95% Wilson interval)")
    ax.set_ylim(0, 1)
    ax.legend(frameon=False)
    fig.tight_layout()
    save(fig, path)


def diff(previous: Path, current: Path, out: Path, previous_eval: Path | None = None,
         current_eval: Path | None = None, models: list[str] = ()) -> dict:
    with building(out) as staging, tempfile.TemporaryDirectory(prefix="diff-") as work:
        work = Path(work)
        raw = {side: load_raw(snapshot / "raw", work / f"{side}.duckdb", work)
               for side, snapshot in (("previous", previous), ("current", current))}
        con = duckdb.connect(str(work / "diff.duckdb"), config={"preserve_insertion_order": True})
        con.execute(f"ATTACH {quote(work / 'previous.duckdb')} AS prev (READ_ONLY)")
        con.execute(f"ATTACH {quote(work / 'current.duckdb')} AS cur (READ_ONLY)")
        attach_snapshot(con, "previous", previous)
        attach_snapshot(con, "current", current)
        report = {"previous": previous.name, "current": current.name, "raw": raw, **data_diff(con, staging)}
        report["moved"] = records(con, "SELECT * FROM moved ORDER BY photo_id")
        con.close()
        report["results"] = results_diff(previous_eval, current_eval, list(models)) if models else []
        write_json(staging / "report.json", report)
        write_text(staging / "report.md", render(report))
        category_figure(report["categories"], (previous.name, current.name), staging / "images_per_category.png")
        results_figure(report["results"], (previous.name, current.name), staging / "results.png")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.diff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--previous", type=Path, required=True, help="the earlier snapshot's folder")
    parser.add_argument("--current", type=Path, required=True, help="the later snapshot's folder")
    parser.add_argument("--previous-eval", type=Path, help="the earlier snapshot's results/<date>/eval")
    parser.add_argument("--current-eval", type=Path, help="the later snapshot's results/<date>/eval")
    parser.add_argument("--models", nargs="*", default=[], help="the evaluated models to compare")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        report = diff(args.previous, args.current, args.out, args.previous_eval, args.current_eval, args.models)
    except CurateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    species, moves = report["species"], report["split_stability"]["by_reason"]
    if moves.get("unexplained"):
        print(f"WARNING: {moves['unexplained']} photos changed subset or split for no known reason (a bug): "
              f"see moved.parquet", file=sys.stderr)
    print(f"{report['previous']} -> {report['current']}: species +{len(species['added'])} -{len(species['removed'])}, "
          f"{report['deleted_photos']['photos']} deleted photos, {report['license_changes']['photos']} license "
          f"changes, {report['split_stability']['moved']} photos moved; {args.out / 'report.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
