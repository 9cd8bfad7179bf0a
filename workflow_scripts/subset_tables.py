"""The paper's Tables 3 and 7 and a distribution plot per subset, from one snapshot's subsets.

    python -m workflow_scripts.subset_tables --subsets data/snapshots/<date>/subsets \\
        --tables results/<date>/tables --figures results/<date>/figures --date <date> --config '<JSON>'

Table 3: unique taxa per level in Train; Table 7: species (and images) per category in Balanced;
each beside the paper's reported values, as CSV, Markdown and LaTeX. Figures: images per species
(log scale) in each subset, species sorted by size.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb
import pandas as pd

from workflow_scripts.captions import LEVELS
from workflow_scripts.duck import quote
from workflow_scripts.plots import plt, save
from workflow_scripts.subsets import SUBSETS
from workflow_scripts.tables import provenance, write_table

# biotrove-method.md: the paper's Table 3 (family count OCR-damaged in the seed) and Table 7
PAPER_TABLE3 = {"kingdom": 3, "phylum": 14, "class": 50, "order": 361, "family": 1912, "genus": 11506,
                "species": 33364}
PAPER_TABLE7 = {"Fungi": 281, "Plantae": 500, "Mollusca": 147, "Insecta": 500, "Arachnida": 136, "Reptilia": 189,
                "Aves": 500}


def table3(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Unique taxa per level in Train; species counted by full lineage, as the subsets group them."""
    counts = con.execute(f"""SELECT {', '.join(f'count(DISTINCT "{level}")' for level in LEVELS[:-1])},
                                    count(DISTINCT taxonomic_name) FILTER (WHERE species IS NOT NULL)
                             FROM train""").fetchone()
    return pd.DataFrame({"level": LEVELS, "unique in Train": counts,
                         "paper (BioTrove-Train)": [PAPER_TABLE3[level] for level in LEVELS]})


def table7(report: dict) -> pd.DataFrame:
    per_category = report["subsets"]["balanced"]["per_category"]
    categories = sorted(set(per_category) | set(report["settings"]["categories"]))
    return pd.DataFrame({
        "category": categories,
        "species in Balanced": [per_category.get(c, {}).get("species", 0) for c in categories],
        "images in Balanced": [per_category.get(c, {}).get("images", 0) for c in categories],
        "paper species": pd.array([PAPER_TABLE7.get(c) for c in categories], dtype="Int64")})


def distribution(con: duckdb.DuckDBPyConnection, subset: str, path: Path) -> None:
    sizes = [r[0] for r in con.execute(f"""SELECT count(*) FROM {subset} GROUP BY coalesce(taxonomic_name, '')
                                            ORDER BY 1 DESC""").fetchall()]
    fig, ax = plt.subplots(figsize=(6, 4))
    if sizes:
        ax.bar(range(len(sizes)), sizes, width=1.0, color="tab:blue")
        ax.set_yscale("log")
    ax.set_xlabel("species (most images first)")
    ax.set_ylabel("images (log scale)")
    ax.set_title(f"{subset}: {sum(sizes):,} images, {len(sizes):,} species")
    fig.tight_layout()
    save(fig, path)


def subset_tables(subsets: Path, tables: Path, figures: Path, date: str, config: dict) -> None:
    con = duckdb.connect()
    for subset in SUBSETS:
        con.execute(f"CREATE VIEW {subset} AS SELECT * FROM read_parquet({quote(subsets / f'{subset}.parquet')})")
    report = json.loads((subsets / "subsets_report.json").read_text())
    tables.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    write_table(table3(con), tables / "table3_train_unique_taxa", "Unique taxa per level in BioTrove-Train.",
                provenance(date, config, [subsets / "train.parquet"]), tex=True)
    write_table(table7(report), tables / "table7_balanced_species", "Species per category in BioTrove-Balanced.",
                provenance(date, config, [subsets / "subsets_report.json"]), tex=True)
    for subset in SUBSETS:
        distribution(con, subset, figures / f"subset_distribution_{subset}.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.subset_tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", type=Path, required=True)
    parser.add_argument("--tables", type=Path, required=True)
    parser.add_argument("--figures", type=Path, required=True)
    parser.add_argument("--date", required=True, help="the snapshot's date (the tables' footer)")
    parser.add_argument("--config", type=json.loads, required=True, help="the whole configuration, as JSON")
    args = parser.parse_args(argv)
    subset_tables(args.subsets, args.tables, args.figures, args.date, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
