"""The paper's Tables 3 and 7 and a distribution plot per subset, from one snapshot's subsets.

    python -m workflow_scripts.subsets.subset_tables \\
        --subsets data/snapshots/<date>/subsets/*.parquet \\
        --report data/snapshots/<date>/subsets/subsets_report.json \\
        --out results/<date>/subset_tables

Table 3: unique taxa per level in Train; Table 7: species (and images) per category in Balanced;
each beside the paper's reported values, as CSV, Markdown and LaTeX. Figures: images per species
(log scale) in each subset, species sorted by size. What made them is in the provenance beside
the folder, not in the tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pandas as pd

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.benchmarks import SUBSET_NAMES
from workflow_scripts.common.files import building
from workflow_scripts.common.overlap import subset_views
from workflow_scripts.common.plots import plt, save
from workflow_scripts.common.tables import write_table
from workflow_scripts.common.taxonomy import RANKS

# the paper's Table 3 (its family count read from a damaged copy of the paper) and Table 7
PAPER_TABLE3 = {
    "kingdom": 3,
    "phylum": 14,
    "class": 50,
    "order": 361,
    "family": 1912,
    "genus": 11506,
    "species": 33364,
}
PAPER_TABLE7 = {
    "Fungi": 281,
    "Plantae": 500,
    "Mollusca": 147,
    "Insecta": 500,
    "Arachnida": 136,
    "Reptilia": 189,
    "Aves": 500,
}


def table3(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Unique taxa per level in Train; species counted by full lineage, as the subsets group
    them."""
    counts = con.execute(f"""
        SELECT {", ".join(f'count(DISTINCT "{rank}")' for rank in RANKS[:-1])},
               count(DISTINCT taxonomic_name) FILTER (WHERE species IS NOT NULL)
        FROM train""").fetchone()
    return pd.DataFrame(
        {
            "level": RANKS,
            "unique in Train": counts,
            f"paper ({SUBSET_NAMES['train']})": [PAPER_TABLE3[rank] for rank in RANKS],
        }
    )


def table7(report: dict) -> pd.DataFrame:
    per_category = report["subsets"]["balanced"]["per_category"]
    categories = sorted(set(per_category) | set(report["settings"]["categories"]))
    return pd.DataFrame(
        {
            "category": categories,
            "species in Balanced": [per_category.get(c, {}).get("species", 0) for c in categories],
            "images in Balanced": [per_category.get(c, {}).get("images", 0) for c in categories],
            "paper species": pd.array([PAPER_TABLE7.get(c) for c in categories], dtype="Int64"),
        }
    )


def distribution(con: duckdb.DuckDBPyConnection, subset: str, path: Path) -> None:
    sizes = [
        r[0]
        for r in con.execute(f"""SELECT count(*) FROM {subset} GROUP BY coalesce(taxonomic_name, '')
                                            ORDER BY 1 DESC""").fetchall()
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    if sizes:
        ax.bar(range(len(sizes)), sizes, width=1.0, color="tab:blue")
        ax.set_yscale("log")
    ax.set_xlabel("species (most images first)")
    ax.set_ylabel("images (log scale)")
    ax.set_title(f"{subset}: {sum(sizes):,} images, {len(sizes):,} species")
    fig.tight_layout()
    save(fig, path)


def subset_tables(tables: list[Path], report_file: Path, out: Path) -> None:
    con = subset_views(tables)
    report = json.loads(report_file.read_text())
    table3_name, table7_name = contracts.SUBSET_TABLES
    with building(out) as staging:
        write_table(
            table3(con),
            staging / table3_name,
            f"Unique taxa per level in {SUBSET_NAMES['train']}.",
            tex=True,
        )
        write_table(
            table7(report),
            staging / table7_name,
            f"Species per category in {SUBSET_NAMES['balanced']}.",
            tex=True,
        )
        for subset in contracts.SUBSETS:
            distribution(con, subset, staging / contracts.subset_figure(subset))


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__)
    parser.add_argument(
        "--subsets",
        type=Path,
        nargs="+",
        required=True,
        help="the subsets' tables, <subset>.parquet",
    )
    parser.add_argument("--report", type=Path, required=True, help="subsets_report.json")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[*args.subsets, args.report]):
        subset_tables(args.subsets, args.report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
