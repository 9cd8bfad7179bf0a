"""The data card of one curated snapshot: what it holds (composition, long tail, licenses, years,
places), how it was filtered, its known biases, what its licenses ask of users and how to cite it.

    python -m workflow_scripts.data_card --curated data/snapshots/<date>/curated/curated.parquet \\
        --curation-report data/snapshots/<date>/curated/curation_report.json \\
        --subsets-report data/snapshots/<date>/subsets/subsets_report.json \\
        --out results/<date>/data_card --date <date>

--date names the snapshot in the card's text (without it, the curated table's snapshot column does).

Writes data_card.md and its four figures. Every number is counted in DuckDB (the world map from
1-degree cells) and every table sorted: reruns give the same bytes.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.drop_reasons import meaning
from workflow_scripts.common.duck import query, quote
from workflow_scripts.common.files import building, write_text
from workflow_scripts.common.long_tail import lorenz
from workflow_scripts.common.plots import plt, save
from workflow_scripts.common.tables import ROUNDING, half_up, markdown
from workflow_scripts.common.taxonomy import OTHER, RANKS, category_sql

BOXES = {
    "North America": (-170, -50, 15, 75),
    "Europe": (-25, 45, 35, 72),
}  # longitudes, then latitudes
RECENT_YEARS = 5
COMPOSITION, LICENSES, YEARS, WORLD_MAP = contracts.DATA_CARD_FIGURES
BIBTEX = (  # one literal per line of the entry, the long ones in two
    "@inproceedings{yang2024biotrove,\n"
    "  title={BioTrove: A Large Curated Image Dataset Enabling AI for Biodiversity},\n"
    "  author={Yang, Chih-Hsuan and Feuer, Benjamin and Jubery, Talukder Zaki and Deng, Zi K. and "
    "Nakkab, Andre and\n"
    "          Hasan, Md Zahid and Chiranjeevi, Shivani and Marshall, Kelly and Baishnab, Nirmal "
    "and Singh, Asheesh K.\n"
    "          and Singh, Arti and Sarkar, Soumik and Merchant, Nirav and Hegde, Chinmay and "
    "Ganapathysubramanian,\n"
    "          Baskar},\n"
    "  booktitle={Advances in Neural Information Processing Systems "
    "(Datasets and Benchmarks Track)},\n"
    "  year={2024}\n"
    "}"
)


def pct(part, whole, places: int = 1) -> str:
    """part/whole in percent, rounded half up (a float part taken as its shortest decimal)."""
    part = Fraction(repr(float(part))) if isinstance(part, float) else Fraction(int(part))
    return half_up(100 * part / int(whole), places) if whole else half_up(0, places)


def shares(counts: pd.Series, whole: int) -> list[float]:
    return [float(pct(n, whole)) for n in counts]


def and_list(names) -> str:
    """'a, b and c' (or 'none')."""
    *rest, last = [str(name) for name in names] or ["none"]
    return f"{', '.join(rest)} and {last}" if rest else last


def license_terms(code: str) -> dict:
    """What a license asks: attribution (every CC-BY*), commercial use (not NC), adaptations (ND,
    SA)."""
    return {
        "attribution required": "yes" if code.startswith("CC-BY") else "no",
        "commercial use": "no" if "-NC" in code else "yes",
        "adaptations": "no" if "-ND" in code else "share alike" if "-SA" in code else "yes",
    }


def measure(con: duckdb.DuckDBPyConnection, categories: dict[str, str]) -> dict:
    """Every number the card shows, aggregated in SQL."""
    m = {
        "totals": query(
            con,
            """SELECT count(*) AS images, count(DISTINCT species) AS species,
            count(DISTINCT taxon_id) AS taxa, count(DISTINCT observation_uuid) AS observations,
            min(observed_on) AS first, max(observed_on) AS last, min(snapshot) AS snapshot,
            list(DISTINCT kingdom ORDER BY kingdom) FILTER (WHERE kingdom IS NOT NULL) AS kingdoms
            FROM curated""",
        ).iloc[0]
    }
    m["ranks"] = query(
        con,
        """SELECT taxon_rank AS rank, count(*) AS images, count(DISTINCT taxon_id) AS taxa
                               FROM curated GROUP BY 1 ORDER BY images DESC, 1""",
    )
    named = (
        query(
            con,
            "SELECT "
            + ", ".join(f'count(DISTINCT "{rank}"), count("{rank}")' for rank in RANKS)
            + " FROM curated",
        )
        .iloc[0]
        .to_numpy()
    )
    m["levels"] = pd.DataFrame({"level": RANKS, "names": named[0::2], "images named": named[1::2]})
    found = query(
        con,
        f"""SELECT {category_sql(categories)} AS category, count(*) AS images,
                           count(DISTINCT species) AS species FROM curated GROUP BY 1""",
    ).set_index("category")
    m["categories"] = found.reindex([*sorted(categories), OTHER], fill_value=0).reset_index()
    m["species"] = query(
        con,
        """SELECT species, count(*) AS images FROM curated WHERE species IS NOT NULL
                                 GROUP BY species ORDER BY images DESC, species""",
    )
    licenses = query(
        con,
        """SELECT coalesce(license, '(none)') AS license, count(*) AS images FROM curated
                             GROUP BY 1 ORDER BY images DESC, 1""",
    )
    licenses["share %"] = shares(licenses.images, int(m["totals"].images))
    m["licenses"] = pd.concat(
        [licenses, pd.DataFrame(list(map(license_terms, licenses.license)))], axis=1
    )
    m["years"] = query(
        con,
        """SELECT year(observed_on) AS year, count(*) AS images FROM curated
                               WHERE observed_on IS NOT NULL GROUP BY 1 ORDER BY 1""",
    )
    located = "latitude IS NOT NULL AND longitude IS NOT NULL"
    boxes = ", ".join(
        f"count(*) FILTER (WHERE longitude BETWEEN {x0} AND {x1} AND latitude BETWEEN {y0} "
        f"AND {y1}) "
        f'AS "{name}"'
        for name, (x0, x1, y0, y1) in BOXES.items()
    )
    m["places"] = query(
        con,
        f"""SELECT count(*) FILTER (WHERE {located}) AS located,
            count(*) FILTER (WHERE {located} AND latitude > 0) AS north, {boxes} FROM curated""",
    ).iloc[0]
    m["cells"] = query(
        con,
        f"""SELECT greatest(-180, least(179, floor(longitude)))::INT AS lon,
            greatest(-90, least(89, floor(latitude)))::INT AS lat, count(*) AS images FROM curated
            WHERE {located} GROUP BY ALL ORDER BY ALL""",
    )
    return m


def overview(m: dict, date: str) -> list[str]:
    t = m["totals"]
    return [
        f"# Data card: BioTrove from iNaturalist Open Data, snapshot {date}",
        "",
        f"This snapshot's curated table holds {t.images:,} images of {t.species:,} species "
        f"({t.taxa:,} taxa: the distinct taxa its photos are identified as, at any rank) from "
        f"{t.observations:,} observations made between {t['first']:%Y-%m-%d} and "
        f"{t['last']:%Y-%m-%d}. It reproduces BioTrove (Yang et al., 2024): research-grade "
        f"iNaturalist photos of {and_list(t.kingdoms)}, each labelled with its taxon's names and "
        f"lineage. {ROUNDING}",
        "",
    ]


def composition(m: dict, categories: dict[str, str]) -> list[str]:
    images, cats = int(m["totals"].images), m["categories"]
    ranks = m["ranks"].assign(**{"share %": shares(m["ranks"].images, images)})[
        ["rank", "images", "share %", "taxa"]
    ]
    cats = cats.assign(
        rank=cats.category.map(categories).fillna(""), **{"share %": shares(cats.images, images)}
    )
    return [
        "## Composition",
        "",
        markdown(ranks, "Images by the rank of the taxon each photo is identified as:"),
        markdown(
            m["levels"],
            "Distinct names at each level of the lineage, and the images named at that level:",
        ),
        markdown(
            cats[["category", "rank", "images", "share %", "species"]],
            "Images and species per category (the subsets' categories, each the taxon of that name "
            f"at its rank; {OTHER}: the rest):",
        ),
        f"![Images and species per category]({COMPOSITION})",
        "",
    ]


def long_tail(m: dict) -> list[str]:
    per_species, (_, _, gini, top20) = m["species"], m["lorenz"]
    return [
        "## Long tail",
        "",
        f"Images per species, over {len(per_species):,} species: Gini coefficient "
        f"{half_up(gini, 3)}; the top 20% of species hold {pct(top20, 1)}% of the species-level "
        f"images; median {per_species.images.median():g} and at most "
        f"{per_species.images.iloc[0]:,} images per species ({per_species.species.iloc[0]}); "
        f"{single(m):,} species ({pct(single(m), len(per_species))}%) have a "
        "single image.",
        "",
    ]


def single(m: dict) -> int:
    """Species with a single image."""
    return int((m["species"].images == 1).sum())


def licenses(m: dict) -> list[str]:
    return [
        "## Licenses",
        "",
        markdown(m["licenses"], "Images per license and its terms:"),
        f"![Images per license]({LICENSES})",
        "",
    ]


def recent_years(m: dict) -> tuple[int, int, str]:
    """The last RECENT_YEARS years of the data and their share of the dated images."""
    years = m["years"]
    last = int(years.year.max())
    recent = years.images[years.year > last - RECENT_YEARS].sum()
    return last - RECENT_YEARS + 1, last, pct(recent, years.images.sum())


def observation_years(m: dict) -> list[str]:
    years, (first, last, recent) = m["years"], recent_years(m)
    peak = years.loc[years.images.idxmax()]  # the earliest of equals
    undated = int(m["totals"].images - years.images.sum())
    return [
        "## Observation years",
        "",
        f"Observed from {int(years.year.min())} to {last}; {recent}% of the dated images are from "
        f"the last {RECENT_YEARS} years of the data ({first}–{last}); the busiest year is "
        f"{int(peak.year)} with {int(peak.images):,} images."
        + (f" {undated:,} images have no observation date." if undated else ""),
        "",
        f"![Images per year of observation]({YEARS})",
        "",
    ]


def geography(m: dict) -> list[str]:
    p, images = m["places"], int(m["totals"].images)
    boxes = and_list(
        f"{pct(p[name], p.located)}% inside a rough {name} box (longitude {x0} to {x1}, latitude "
        f"{y0} to {y1})"
        for name, (x0, x1, y0, y1) in BOXES.items()
    )
    return [
        "## Geography",
        "",
        f"{p.located:,} of {images:,} images ({pct(p.located, images)}%) have coordinates. Of "
        f"those, {pct(p.north, p.located)}% lie in the northern hemisphere (latitude above 0), "
        f"{boxes}. The boxes are rectangles of longitude and latitude, not borders.",
        "",
        f"![Observation density on a longitude/latitude grid]({WORLD_MAP})",
        "",
    ]


def filters(curation: dict, subsets: dict) -> list[str]:
    read, rows_read, rejected = (
        curation["photos_in"],
        curation.get("rows_read", {}),
        curation["rejected_rows"],
    )
    reasons = pd.DataFrame(
        [
            (r, n, pct(n, read, 2), meaning(r))
            for r, n in sorted(curation["dropped"].items(), key=lambda item: (-item[1], item[0]))
        ],
        columns=["reason", "photos", "share of photos read %", "meaning"],
    )
    tables = pd.DataFrame(
        [(t, rows_read.get(t), rejected.get(t, 0)) for t in sorted({*rows_read, *rejected})],
        columns=["table", "rows read", "rejected rows"],
    ).astype({"rows read": "Int64"})
    sizes = pd.DataFrame(
        [(name, s["images"], s.get("species")) for name, s in sorted(subsets["subsets"].items())],
        columns=["subset", "images", "species"],
    ).astype({"species": "Int64"})
    return [
        "## Filters and rows dropped",
        "",
        f"Curation read {read:,} photo rows and kept {curation['photos_out']:,} "
        f"({pct(curation['photos_out'], read)}%).",
        "",
        markdown(
            reasons,
            "Photos dropped, by reason (each dropped photo has one, the first that applies):",
        ),
        markdown(tables, "Rows of the raw tables rejected by the format check:"),
        markdown(sizes, "The subsets built from the curated table:"),
    ]


def biases(m: dict, curation: dict) -> list[str]:
    p, images, read = m["places"], int(m["totals"].images), curation["photos_in"]
    named = m["categories"].iloc[:-1].sort_values(["images", "category"], ascending=[False, True])
    first, last, recent = recent_years(m)
    dropped = {
        reason: curation["dropped"].get(reason, 0) for reason in ("quality_grade", "license")
    }
    return [
        "## Known biases",
        "",
        "Measured on this snapshot (the sections above):",
        "",
        f"- **Places.** {pct(sum(p[name] for name in BOXES), p.located)}% of the images with "
        f"coordinates fall in the {and_list(BOXES)} boxes and {pct(p.north, p.located)}% in the "
        f"northern hemisphere. Observations are made where iNaturalist's observers are, most of "
        f"them in North America and Europe: compare these shares with the world map.",
        f"- **Taxa.** The largest category, {named.category.iloc[0]}, holds "
        f"{pct(named.images.iloc[0], images)}% of the images; "
        f"{pct(m['categories'].images.iloc[-1], images)}% fall outside the "
        f"{len(named)} categories.",
        f"- **What gets identified.** Only research-grade observations are kept "
        f"({dropped['quality_grade']:,} photos, {pct(dropped['quality_grade'], read)}% of those "
        f"read, were not): ones the community agrees on, which favours common, easily identified "
        f"and photogenic species over cryptic or look-alike ones.",
        f"- **The long tail.** The top 20% of species hold {pct(m['lorenz'][3], 1)}% of the "
        f"species-level images and {single(m):,} species have a single image: rare species are "
        f"seen little in training and evaluation.",
        f"- **Time.** {recent}% of the dated images are from {first}–{last}, the last "
        f"{RECENT_YEARS} years of the data; iNaturalist's observations have grown year by year "
        f"(see the figure).",
        "- **People.** iNaturalist Open Data does not export photos of humans (Homo).",
        f"- **Licenses.** iNaturalist's open data leave out all-rights-reserved photos, and "
        f"curation kept only {and_list(sorted(m['licenses'].license))} ({dropped['license']:,} "
        f"photos dropped for their license): the observers who choose these licenses shape "
        f"the data.",
        "",
    ]


def duties(m: dict, date: str) -> list[str]:
    frame, images = m["licenses"], int(m["totals"].images)
    attributed = frame[frame["attribution required"] == "yes"]
    noncommercial = frame[frame["commercial use"] == "no"]
    return [
        "## License duties and attribution",
        "",
        f"{attributed.images.sum():,} images ({pct(attributed.images.sum(), images)}%: "
        f"{and_list(attributed.license)}) require attribution to their observer; "
        f"{noncommercial.images.sum():,} ({and_list(noncommercial.license)}) may not be used "
        f"commercially. The pipeline stores no observer data. Each photo's attribution is on "
        f"`https://www.inaturalist.org/photos/<photo_id>` and its observation at "
        f"`https://www.inaturalist.org/observations/<observation_uuid>`; for many photos at once, "
        f"join the snapshot's photos.csv.gz (photo_id -> observer_id) with observers.csv.gz "
        f"(observer_id -> login, name), both in the fetched snapshot's `raw/` folder "
        f"(`{contracts.raw(contracts.snapshot('data', date))}/` with the default data_root).",
        "",
    ]


def citation(date: str) -> list[str]:
    return [
        "## How to cite",
        "",
        "BioTrove:",
        "",
        "```bibtex",
        BIBTEX,
        "```",
        "",
        f"The source: iNaturalist Open Data, https://github.com/inaturalist/inaturalist-open-data, "
        f"snapshot {date}.",
        "",
        "Each photo stays under its own license: credit the photos you use as it requires, with "
        "their observer and link found as under License duties and attribution.",
        "",
    ]


def bars(frame: pd.DataFrame, label: str, columns: tuple[str, ...], path: Path, title: str) -> None:
    """One bar panel per column of `frame`, bars at its `label` column (names, or numbers on an
    axis)."""
    width = min(16, 2 + 0.5 * len(frame) * len(columns))
    fig, axes = plt.subplots(1, len(columns), figsize=(width, 4), squeeze=False)
    for ax, column in zip(axes[0], columns):
        ax.bar(frame[label], frame[column], color="tab:blue")
        ax.set_ylabel(column)
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def world_map(cells: pd.DataFrame, path: Path) -> None:
    """Images per 1-degree cell on a plain longitude/latitude grid, log colour scale, with the
    boxes."""
    grid = np.zeros((180, 360))
    grid[cells.lat + 90, cells.lon + 180] = cells.images
    fig, ax = plt.subplots(figsize=(11, 5.8))
    image = ax.imshow(
        np.ma.masked_equal(grid, 0),
        origin="lower",
        extent=(-180, 180, -90, 90),
        cmap="viridis",
        norm=LogNorm(vmin=1, vmax=max(grid.max(), 10)),
        interpolation="nearest",
    )
    for name, (x0, x1, y0, y1) in BOXES.items():
        ax.add_patch(
            plt.Rectangle(
                (x0, y0), x1 - x0, y1 - y0, fill=False, linestyle="--", edgecolor="tab:red"
            )
        )
        ax.text(x0 + 1, y1 - 1, f"{name} box", va="top", fontsize=8, color="tab:red")
    ax.set(
        facecolor="whitesmoke",
        xticks=range(-180, 181, 30),
        yticks=range(-90, 91, 30),
        xlabel="longitude (degrees)",
        ylabel="latitude (degrees)",
        title="Observation density: images per 1-degree cell",
    )
    ax.grid(linewidth=0.3, color="gray")
    fig.colorbar(image, ax=ax, label="images (log scale)", shrink=0.7)
    fig.tight_layout()
    save(fig, path)


def data_card(
    curated: Path, curation_report: Path, subsets_report: Path, out: Path, date: str | None = None
) -> None:
    curation, subsets = (json.loads(path.read_text()) for path in (curation_report, subsets_report))
    categories = subsets["settings"]["categories"]
    with building(out) as staging:
        con = duckdb.connect()
        con.execute(f"CREATE VIEW curated AS SELECT * FROM read_parquet({quote(curated)})")
        m = measure(con, categories)
        if m["species"].empty or m["years"].empty:
            raise cli.StageError(
                f"{curated}: no dated image identified to species: nothing to describe"
            )
        date = date or f"{m['totals'].snapshot:%Y-%m-%d}"
        m["lorenz"] = lorenz(m["species"].images.to_numpy())
        text = [
            *overview(m, date),
            *composition(m, categories),
            *long_tail(m),
            *licenses(m),
            *observation_years(m),
            *geography(m),
            *filters(curation, subsets),
            *biases(m, curation),
            *duties(m, date),
            *citation(date),
        ]
        write_text(staging / contracts.DATA_CARD, "\n".join(text).rstrip("\n") + "\n")
        bars(
            m["categories"],
            "category",
            ("images", "species"),
            staging / COMPOSITION,
            "Images and species per category",
        )
        bars(m["licenses"], "license", ("images",), staging / LICENSES, "Images per license")
        bars(m["years"], "year", ("images",), staging / YEARS, "Images per year of observation")
        world_map(m["cells"], staging / WORLD_MAP)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__)
    parser.add_argument("--curated", type=Path, required=True, help="curated.parquet")
    parser.add_argument(
        "--curation-report", type=Path, required=True, help="curate's curation_report.json"
    )
    parser.add_argument(
        "--subsets-report", type=Path, required=True, help="subsets' subsets_report.json"
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[args.curated, args.curation_report, args.subsets_report]):
        data_card(args.curated, args.curation_report, args.subsets_report, args.out, args.date)
    print(f"wrote {args.out / contracts.DATA_CARD} and its figures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
