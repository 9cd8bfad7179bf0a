"""The genus-sampled subset's long tail beside the whole curated table's: what drawing whole genera
kept (the Pl@ntNet seed: there, the top 20% of species hold 89% of the images).

    python -m workflow_scripts.subsets.genus_sampled_long_tail \\
        --curated data/snapshots/<date>/curated/curated.parquet \\
        --subset data/snapshots/<date>/subsets/genus_sampled.parquet \\
        --out results/<date>/genus_sampled

Per table (rows at rank species, a species by its full lineage as the subsets count it): species,
images, genera, the share of images held by the top 20% of species, the Gini coefficient, and
species per genus (mean, median, most, the share of genera with 3 or more), as
genus_sampled_long_tail.{csv,md,tex}; the figure (.png) has both Lorenz curves and the distribution
of species per genus.
"""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.cli import StageError
from workflow_scripts.common.duck import quote
from workflow_scripts.common.files import building
from workflow_scripts.common.long_tail import lorenz
from workflow_scripts.common.plots import plt, save
from workflow_scripts.common.tables import ROUNDING, half_up, write_table
from workflow_scripts.common.taxonomy import lineage_key_sql

CONGENERS = 3  # a genus with this many species or more holds look-alikes to tell apart
GENUS = lineage_key_sql("genus")


def species_sizes(table: Path) -> pd.DataFrame:
    """Per species (rows at rank species): its genus (lineage) and its images."""
    return (
        duckdb.connect()
        .execute(f"""
        SELECT {GENUS} AS genus, taxonomic_name AS species, count(*) AS images
        FROM read_parquet({quote(table)}) WHERE species IS NOT NULL GROUP BY ALL ORDER BY ALL""")
        .df()
    )


def summary(sizes: pd.DataFrame) -> dict:
    """One table's row: counts exact, shares rounded half up (common.tables.half_up)."""
    _, _, gini, top20 = lorenz(sizes.images.to_numpy())
    per_genus = sizes.groupby("genus").size()
    genera = len(per_genus)
    return {
        "species": len(sizes),
        "images": int(sizes.images.sum()),
        "genera": genera,
        "top 20% species' image share (%)": half_up(100 * top20, 1),
        "Gini": half_up(gini, 3),
        "species per genus (mean)": half_up(Fraction(len(sizes), genera), 2),
        "species per genus (median)": half_up(float(per_genus.median()), 1),
        "species per genus (most)": int(per_genus.max()),
        f"genera with {CONGENERS}+ species (%)": half_up(
            Fraction(100 * int((per_genus >= CONGENERS).sum()), genera), 1
        ),
    }


def figure(tables: dict[str, pd.DataFrame], path: Path) -> None:
    fig, (curves, genera) = plt.subplots(1, 2, figsize=(11, 4.5))
    most = max(int(sizes.groupby("genus").size().max()) for sizes in tables.values())
    width = 0.8 / len(tables)
    for number, (name, sizes) in enumerate(tables.items()):
        x, y, _, top20 = lorenz(sizes.images.to_numpy())
        curves.plot(x, y, label=f"{name}: top 20% of species hold {100 * top20:.1f}%")
        share = (
            sizes.groupby("genus")
            .size()
            .value_counts(normalize=True)
            .reindex(range(1, most + 1), fill_value=0)
        )
        genera.bar(
            np.arange(1, most + 1) + (number - (len(tables) - 1) / 2) * width,
            100 * share,
            width,
            label=name,
        )
    curves.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="equal shares")
    curves.set(
        xlabel="share of species (fewest images first)", ylabel="share of images", title="Long tail"
    )
    curves.legend(loc="upper left", fontsize=8)
    genera.set(xlabel="species in the genus", ylabel="genera (%)", title="Species per genus")
    genera.set_xticks(range(1, most + 1))
    genera.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path)


def long_tail(curated: Path, subset: Path, out: Path) -> pd.DataFrame:
    tables = {
        "curated table": species_sizes(curated),
        contracts.GENUS_SAMPLED: species_sizes(subset),
    }
    if tables[contracts.GENUS_SAMPLED].empty:
        raise StageError(
            f"{subset}: no rows: no genus qualified or none was drawn (subsets.genus_sampled: "
            "lower min_species_per_genus or min_images_per_species, or draw more genera)"
        )
    frame = pd.DataFrame([{"table": name, **summary(sizes)} for name, sizes in tables.items()])
    with building(out) as staging:
        write_table(
            frame,
            staging / contracts.LONG_TAIL,
            "The genus-sampled subset's long tail beside the curated table's (species at "
            "rank species). " + ROUNDING,
            tex=True,
        )
        figure(tables, staging / f"{contracts.LONG_TAIL}.png")
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__)
    parser.add_argument("--curated", type=Path, required=True, help="curated.parquet")
    parser.add_argument("--subset", type=Path, required=True, help="genus_sampled.parquet")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[args.curated, args.subset]):
        long_tail(args.curated, args.subset, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
