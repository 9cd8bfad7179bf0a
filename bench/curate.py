"""Curation benchmark: DuckDB curation vs a straightforward pandas implementation of the same rules.

    python bench/curate.py [--rows 1000000 10000000] [--workdir /tmp/biotrove-bench]   (make bench)

Inputs: the sample generator's newer month (tables only), tiled with fresh photo ids and uuids up
to the requested number of photo rows. For each size it prints wall time, rows/s and peak RSS of
each implementation (each runs in its own process), their ratio, the floor (decompressing the
same inputs to /dev/null with gzip), and the projection to a 400 M-photo snapshot. The largest
size runs once more with a memory_limit below its tables' size, spilling as a full snapshot would.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import measured  # noqa: E402
from tests.sample_tables import bundle_tables, tiled_snapshot  # noqa: E402
from workflow_scripts.common import contracts  # noqa: E402
from workflow_scripts.common.config import settings  # noqa: E402
from workflow_scripts.common.taxonomy import RANKS  # noqa: E402
from workflow_scripts.sample.bucket import generate  # noqa: E402

DEFAULTS = settings("curate")  # the schema's: the rules the pandas version follows too

FULL_SNAPSHOT_ROWS = 400_000_000


def pandas_curate(folder: Path, taxonomy_csv: Path, out: Path) -> int:
    """The same rules, written the obvious way with pandas."""

    def read(table: str, types: dict) -> pd.DataFrame:
        return pd.read_csv(
            folder / f"{table}.csv.gz",
            sep="\t",
            quoting=csv.QUOTE_NONE,
            dtype=types,
            keep_default_na=False,
            na_values=[""],
        )

    photos = read(
        "photos",
        {
            "photo_uuid": str,
            "photo_id": "int64",
            "observation_uuid": str,
            "extension": str,
            "license": str,
            "observer_id": "Int64",
            "width": "Int32",
            "height": "Int32",
            "position": "Int32",
        },
    ).drop(columns="observer_id")
    obs = read(
        "observations",
        {
            "observation_uuid": str,
            "taxon_id": "Int64",
            "quality_grade": str,
            "observer_id": "Int64",
        },
    ).drop(columns="observer_id")
    obs = obs.drop_duplicates("observation_uuid")
    taxa = read(
        "taxa", {"taxon_id": "int64", "ancestry": str, "rank": str, "name": str, "active": str}
    )
    taxa["active"] = taxa.active == "true"
    steps = (
        taxa[["taxon_id"]]
        .assign(ancestor=taxa.ancestry.fillna("").str.split("/"))
        .explode("ancestor")
    )
    steps = steps[steps.ancestor != ""].astype({"ancestor": "int64"})
    steps = pd.concat([steps, pd.DataFrame({"taxon_id": taxa.taxon_id, "ancestor": taxa.taxon_id})])
    named = steps.merge(
        taxa[["taxon_id", "rank", "name"]].rename(columns={"taxon_id": "ancestor"}), on="ancestor"
    )
    ranks = (
        named[named["rank"].isin(RANKS)]
        .pivot_table(index="taxon_id", columns="rank", values="name", aggfunc="max")
        .reindex(columns=list(RANKS))
    )
    frame = (
        photos.merge(obs, on="observation_uuid", how="left", indicator="has_obs")
        .merge(
            taxa[["taxon_id", "rank", "name", "active"]],
            on="taxon_id",
            how="left",
            indicator="has_taxon",
        )
        .merge(ranks, left_on="taxon_id", right_index=True, how="left")
    )
    keep = (
        (frame.has_obs == "both")
        & frame.quality_grade.isin(DEFAULTS["quality_grades"])
        & (frame.has_taxon == "both")
        & frame.active.astype("boolean").fillna(False)
        & frame.kingdom.isin(DEFAULTS["kingdoms"])
        & frame.license.isin(DEFAULTS["licenses"])
    )
    kept = frame[keep]
    by_photo = kept.groupby("photo_id").taxon_id
    kept = kept[by_photo.transform("min") == by_photo.transform("max")]
    kept = kept.sort_values(["photo_id", "observation_uuid"]).drop_duplicates("photo_id")
    names = pd.read_csv(taxonomy_csv, dtype={"id": "int64"}).dropna(subset=["vernacularName"])
    names = names.sort_values(["id", "created", "vernacularName"]).drop_duplicates("id")
    kept = kept.merge(
        names[["id", "vernacularName"]].rename(columns={"id": "taxon_id"}),
        on="taxon_id",
        how="left",
    )
    kept["photo_url"] = (
        DEFAULTS["photo_url_prefix"] + "/" + kept.photo_id.astype(str) + "/medium." + kept.extension
    )
    kept.sort_values("photo_id").to_parquet(out, index=False)
    return len(kept)


def curate_command(folder: Path, taxonomy: Path, settings: dict) -> list[str]:
    return [
        sys.executable,
        "-m",
        "workflow_scripts.curate",
        "--raw",
        str(folder),
        "--taxonomy",
        str(taxonomy),
        "--out",
        str(folder / "curated-duckdb"),
        "--date",
        "2024-09-27",
        "--settings",
        json.dumps(settings),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/biotrove-bench"))
    parser.add_argument(
        "--spill-limit", default="1GB", help="memory_limit of the spilling run at the largest size"
    )
    parser.add_argument(
        "--pandas-only", nargs=3, metavar=("DIR", "TAXONOMY_CSV", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.pandas_only:
        pandas_curate(
            Path(args.pandas_only[0]), Path(args.pandas_only[1]), Path(args.pandas_only[2])
        )
        return 0
    mirror = args.workdir / "sample" / contracts.SAMPLE_BUCKET
    if not (mirror / "metadata").exists():
        generate(mirror.parent, with_images=False)
    base = bundle_tables(mirror, "2024-09-27")
    taxonomy = mirror / "inaturalist-taxonomy.dwca.zip"
    subprocess.run(
        [
            "unzip",
            "-o",
            "-q",
            str(taxonomy),
            "VernacularNames-english.csv",
            "-d",
            str(args.workdir),
        ],
        check=True,
    )
    print(
        f"{'rows':>11} {'floor s':>8} {'duckdb s':>9} {'rows/s':>10} {'RSS GB':>7} {'pandas s':>9} "
        f"{'RSS GB':>7} {'pandas/duckdb':>14} {'duckdb/floor':>13}"
    )
    results = []
    for rows in args.rows:
        folder = tiled_snapshot(base, rows, args.workdir / f"rows-{rows}")
        inputs = [str(folder / f"{t}.csv.gz") for t in ("photos", "observations", "taxa")]
        floor, _ = measured(["sh", "-c", f"gzip -dc {' '.join(inputs)} > /dev/null"])
        duck, duck_rss = measured(curate_command(folder, taxonomy, {"threads": 2}))
        panda, panda_rss = measured(
            [
                sys.executable,
                __file__,
                "--pandas-only",
                str(folder),
                str(args.workdir / "VernacularNames-english.csv"),
                str(folder / "pandas.parquet"),
            ]
        )
        same = (
            pd.read_parquet(
                folder / "curated-duckdb" / "curated.parquet", columns=["photo_id"]
            ).photo_id.tolist()
            == pd.read_parquet(folder / "pandas.parquet", columns=["photo_id"]).photo_id.tolist()
        )
        print(
            f"{rows:>11,} {floor:>8.1f} {duck:>9.1f} {rows / duck:>10,.0f} {duck_rss:>7.2f} "
            f"{panda:>9.1f} {panda_rss:>7.2f} {panda / duck:>14.1f} {duck / floor:>13.2f}"
            + ("" if same else "   (pandas and DuckDB DISAGREE on the kept photos)")
        )
        results.append((rows, floor, duck, duck_rss))
    rows, floor, duck, duck_rss = results[-1]
    # At 400 M rows the tables are ~25x memory_limit; make the largest size spill like that too.
    spill, spill_rss = measured(
        curate_command(folder, taxonomy, {"threads": 2, "memory_limit": args.spill_limit})
    )
    print(
        f"{rows:>11,} spilling (memory_limit={args.spill_limit}, below its tables' in-memory "
        f"size): {spill:.1f} s, {spill / floor:.2f}x the floor, peak RSS {spill_rss:.2f} GB"
    )
    scale = FULL_SNAPSHOT_ROWS / rows
    print(
        f"\nprojected to {FULL_SNAPSHOT_ROWS / 1e6:.0f} M photo rows (linear from {rows / 1e6:g} "
        f"M): curation {duck * scale / 60:.0f} min in memory, {spill * scale / 60:.0f} min "
        f"spilling; floor {floor * scale / 60:.0f} min (target <= 30 min on 2 cores, <= 3x the "
        f"floor); peak RSS is bounded by curate.memory_limit ({DEFAULTS['memory_limit']}) plus the "
        f"Python process, measured {duck_rss:.2f} GB (target <= 12 GB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
