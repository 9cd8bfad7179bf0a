"""Dataset statistics of one curated snapshot: the paper's Figures 2 and 3, the BioTrove column
of Tables 2/6, and the long tail (Lorenz curve, share of images held by the top 20% of species).

    python -m workflow_scripts.stats --curated data/snapshots/<date>/curated/curated.parquet \\
        --out data/snapshots/<date>/stats

All counts are integers computed in DuckDB and sorted before writing: reruns give the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import squarify

from workflow_scripts.common import cli
from workflow_scripts.common.duck import query, quote
from workflow_scripts.common.files import building
from workflow_scripts.common.long_tail import lorenz
from workflow_scripts.common.plots import plt, save
from workflow_scripts.common.tables import write_table
from workflow_scripts.common.taxonomy import ranks_down_to

TREEMAP_RANKS = ranks_down_to("family")  # Figure 3's treemap, kingdom to family
TOP_SPECIES = 40  # in the top-species table and Figure 2c
KINGDOM_COLOURS = {"Animalia": "tab:orange", "Plantae": "tab:green", "Fungi": "tab:purple"}


def per_level(con, level: str) -> pd.DataFrame:
    return query(
        con,
        f"""SELECT coalesce("{level}", '(unknown)') AS "{level}", count(*) AS images,
                                 count(DISTINCT species) AS species
                          FROM curated GROUP BY 1 ORDER BY images DESC, 1""",
    )


def figure2(phyla: pd.DataFrame, top_species: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5), gridspec_kw={"width_ratios": [1, 1, 1.6]})
    top7 = phyla.head(7)
    axes[0].bar(top7.phylum, top7.images, color="tab:blue")
    axes[0].set_title("(a) images, top seven phyla")
    by_species = phyla.sort_values(["species", "phylum"], ascending=[False, True]).head(7)
    axes[1].bar(by_species.phylum, by_species.species, color="tab:green")
    axes[1].set_title("(b) species, top seven phyla")
    for ax in axes[:2]:
        ax.tick_params(axis="x", rotation=45)
    axes[2].barh(top_species.species[::-1], top_species.images[::-1], color="tab:orange")
    axes[2].set_title(f"(c) the {len(top_species)} most observed species")
    axes[2].tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    save(fig, path)


def treemap(frame: pd.DataFrame, path: Path) -> None:
    """Nested boxes kingdom -> phylum -> class -> order -> family, area = images."""
    fig, ax = plt.subplots(figsize=(14, 9))

    def draw(
        rows: pd.DataFrame, depth: int, x: float, y: float, dx: float, dy: float, colour: str
    ) -> None:
        level = TREEMAP_RANKS[depth]
        groups = rows.groupby(level, dropna=False, sort=False).images.sum().reset_index()
        groups = groups.sort_values(["images", level], ascending=[False, True])
        sizes = squarify.normalize_sizes(groups.images.tolist(), dx, dy)
        for (name, _images), rect in zip(
            groups.itertuples(index=False), squarify.squarify(sizes, x, y, dx, dy)
        ):
            fill = KINGDOM_COLOURS.get(name, "tab:gray") if depth == 0 else colour
            ax.add_patch(
                plt.Rectangle(
                    (rect["x"], rect["y"]),
                    rect["dx"],
                    rect["dy"],
                    facecolor=fill,
                    alpha=0.35,
                    edgecolor="white",
                    linewidth=3 - 0.5 * depth,
                )
            )
            # nested boxes share their top-left corner: each depth writes one line lower
            if rect["dx"] > 0.06 and rect["dy"] > 0.025 * (depth + 1) and isinstance(name, str):
                ax.text(
                    rect["x"] + 0.003,
                    rect["y"] + rect["dy"] - 0.003 - 0.022 * depth,
                    name,
                    va="top",
                    fontsize=10 - depth,
                    clip_on=True,
                )
            if depth + 1 < len(TREEMAP_RANKS):
                draw(
                    rows[rows[level] == name]
                    if isinstance(name, str)
                    else rows[rows[level].isna()],
                    depth + 1,
                    rect["x"],
                    rect["y"],
                    rect["dx"],
                    rect["dy"],
                    fill,
                )

    draw(frame, 0, 0, 0, 1, 1, "tab:gray")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title("Curated images by kingdom, phylum, class, order and family (area = images)")
    save(fig, path)


def lorenz_plot(x: np.ndarray, y: np.ndarray, gini: float, top20: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(x, y, label=f"images (Gini {gini:.3f})")
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8, label="equal shares")
    ax.set_xlabel("share of species (fewest images first)")
    ax.set_ylabel("share of images")
    ax.set_title(f"Long tail: the top 20% of species hold {100 * top20:.1f}% of images")
    ax.legend(loc="upper left")
    fig.tight_layout()
    save(fig, path)


def stats(curated: Path, out: Path, top_n: int = TOP_SPECIES) -> dict:
    with building(out) as staging:
        con = duckdb.connect()
        con.execute(f"CREATE VIEW curated AS SELECT * FROM read_parquet({quote(curated)})")
        levels = {level: per_level(con, level) for level in ranks_down_to("class")}
        for level, frame in levels.items():
            write_table(
                frame,
                staging / f"images_species_by_{level}",
                f"Curated images and species per {level}.",
            )
        per_species = query(
            con,
            """SELECT species, any_value(kingdom) AS kingdom, count(*) AS images FROM curated
               WHERE species IS NOT NULL GROUP BY species ORDER BY images DESC, species""",
        )
        write_table(
            per_species.head(top_n),
            staging / "top_species",
            f"The {top_n} species with the most images.",
        )
        figure2(levels["phylum"], per_species.head(top_n), staging / "figure2_distribution.png")
        treemap(
            query(
                con,
                f"""SELECT {", ".join(f'"{c}"' for c in TREEMAP_RANKS)}, count(*) AS images
                    FROM curated GROUP BY ALL ORDER BY ALL""",
            ),
            staging / "figure3_treemap.png",
        )
        x, y, gini, top20 = lorenz(per_species.images.to_numpy())
        lorenz_plot(x, y, gini, top20, staging / "long_tail_lorenz.png")
        totals = query(
            con,
            "SELECT count(*) AS images, count(DISTINCT species) AS species, "
            "count(DISTINCT kingdom) AS kingdoms, min(snapshot) AS snapshot FROM curated",
        ).iloc[0]
        long_tail = pd.DataFrame(
            {
                "measure": [
                    "species",
                    "images",
                    "gini",
                    "top_20pct_species_image_share",
                    "median_images_per_species",
                    "species_with_fewer_than_30_images",
                ],
                "value": pd.Series(
                    [
                        len(per_species),
                        int(per_species.images.sum()),
                        round(gini, 4),
                        round(top20, 4),
                        float(per_species.images.median()),
                        int((per_species.images < 30).sum()),
                    ],
                    dtype=object,
                ),
            }
        )
        write_table(long_tail, staging / "long_tail", "Long-tail statistics of images per species.")
        table2 = pd.DataFrame(
            {
                "feature": [
                    "Size",
                    "Diversity",
                    "Kingdoms",
                    "Labels provided",
                    "Data source",
                    "Snapshot",
                ],
                "BioTrove (this snapshot)": [
                    f"{int(totals.images):,} images",
                    f"{int(totals.species):,} species",
                    str(int(totals.kingdoms)),
                    "Common and scientific names, taxonomic hierarchy",
                    "iNaturalist Open Data",
                    str(totals.snapshot)[:10],
                ],
            }
        )
        write_table(
            table2,
            staging / "table2_biotrove_column",
            "The BioTrove column of the paper's Tables 2 and 6.",
        )
    return {
        "images": int(totals.images),
        "species": int(totals.species),
        "gini": gini,
        "top20_share": top20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__)
    parser.add_argument("--curated", type=Path, required=True, help="curated.parquet")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[args.curated]):
        summary = stats(args.curated, args.out)
    print(
        f"{args.out}: {summary['images']} images, {summary['species']} species; top 20% of species "
        f"hold {100 * summary['top20_share']:.1f}% of images",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
