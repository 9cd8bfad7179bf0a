"""The image overlap check: the subsets' overlap checks again (common/overlap.py), after the
downloads, then duplicate images between the subsets: exact ones by the sha256 of the downloaded
bytes (img2dataset records it), near ones by perceptual hash
(workflow_scripts.images.near_duplicates), also against the configured external benchmarks. Each
pair of subsets sharing an image is listed (exact), and so is each train or val image of Train and
of genus_sampled within `overlap.near_duplicate_threshold` of one of its evaluation images
(`near_duplicates`, each pair with its `subset`), and each pair of near duplicates between two
evaluation sets (`images.near.between_evaluation_sets`). A subset's train and val copies of an
image that one of its evaluation sets has are named in `drop_from_shards`, per subset and by reason
(the shards rules leave them out, so no test image is trained on); groups of duplicates inside
Train and inside genus_sampled are listed (`inside_<subset>`), and kept.

    python -m workflow_scripts.images.check_image_overlap \\
        --subsets data/snapshots/<date>/subsets/*.parquet \\
        --downloads data/snapshots/<date>/images/*/download_report.json \\
        [--external-hashes data/snapshots/<date>/images/external/<name>.hashes.parquet ...] \\
        --out data/snapshots/<date>/images/overlap_report.json [--config config.yaml]
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import duckdb
import pandas as pd

from workflow_scripts.common import cli, contracts, overlap
from workflow_scripts.common.config import settings as overlap_settings
from workflow_scripts.common.duck import quote
from workflow_scripts.common.files import write_json
from workflow_scripts.common.tables import write_table
from workflow_scripts.images.download_chunk import downloaded
from workflow_scripts.images.near_duplicates import (
    evaluation_condition,
    listed,
    near_duplicates,
)

EXAMPLES = overlap.EXAMPLES
EXACT, NEAR = "exact_duplicate", "near_duplicate"  # why a training photo is left out of its shards
PAIR_COLUMNS = ["subset", "train", "benchmark", "photo_id", "distance"]


def with_split(subset: str) -> str:
    """A subset's downloaded images as (benchmark, photo_id, sha256, split)."""
    if subset in contracts.SPLIT_SUBSETS:
        return f"""SELECT {quote(subset)} AS benchmark, photo_id, sha256, split
                   FROM images_{subset} JOIN {subset} USING (photo_id)"""
    return f"SELECT {quote(subset)}, photo_id, sha256, NULL FROM images_{subset}"


def image_duplicates(con: duckdb.DuckDBPyConnection) -> dict:
    """Exact duplicates among the downloaded images (views images_<subset>: photo_id, sha256):
    shared between subsets; per subset with splits, its train and val images whose bytes one of
    its evaluation images has (left out of its shards) and its groups (kept)."""
    between = []
    for left, right in itertools.combinations(contracts.SUBSETS, 2):
        pairs = con.execute(f"""SELECT a.photo_id, b.photo_id
                                FROM images_{left} AS a JOIN images_{right} AS b
                                USING (sha256) ORDER BY 1, 2""").fetchall()
        if pairs:
            between.append(
                {
                    "between": [left, right],
                    "count": len(pairs),
                    "examples": [f"{a}={b}" for a, b in pairs[:EXAMPLES]],
                }
            )
    con.execute(
        "CREATE TABLE downloaded AS " + " UNION ALL ".join(map(with_split, contracts.SUBSETS))
    )
    report = {"shared_between_subsets": between, "drop_from_shards": {}}
    for side in contracts.SPLIT_SUBSETS:
        drop = [
            r[0]
            for r in con.execute(f"""SELECT photo_id FROM downloaded
                                     WHERE benchmark = {quote(side)} AND split != 'test'
                                       AND sha256 IN (SELECT sha256 FROM downloaded
                                                      WHERE {evaluation_condition(side)})
                                     ORDER BY 1""").fetchall()
        ]
        groups = [
            r[0]
            for r in con.execute(f"""SELECT list(photo_id ORDER BY photo_id) FROM images_{side}
                                     GROUP BY sha256 HAVING count(*) > 1 ORDER BY 1""").fetchall()
        ]
        report["drop_from_shards"][side] = {EXACT: drop}
        report[f"inside_{side}"] = listed(groups)
    return report


def check(
    tables: list[Path],
    downloads: list[Path],
    external: list[Path] = (),
    settings: dict | None = None,
) -> dict:
    """The subsets' overlap checks and their images' duplicates: `tables`, the subsets' tables, and
    `downloads`, their download reports (in the same order), each beside its chunks' folders and
    its hashes; `external`, the external benchmarks' hashes. `settings`: config.yaml's `overlap`."""
    con = overlap.subset_views(tables)
    report = overlap.check(con)
    hashes = {}
    for subset, download in zip(contracts.subsets_by_name(tables), downloads, strict=True):
        if not download.is_file():
            raise overlap.OverlapError(f"{download}: missing: download the images first")
        downloaded(con, download)
        con.execute(f"CREATE TABLE images_{subset} AS SELECT photo_id, sha256 FROM successes")
        hashes[subset] = str(download.parent / contracts.HASHES)
    hashes |= {path.name.removesuffix(f".{contracts.HASHES}"): str(path) for path in external}
    report["images"] = image_duplicates(con)
    near = near_duplicates(con, hashes, overlap_settings("overlap", settings))
    report["near_duplicates"] = near.pop("near_duplicates")
    report["images"]["near"] = near
    for side, dropped in report["images"]["drop_from_shards"].items():
        near_copies = {p["train"] for p in report["near_duplicates"] if p["subset"] == side}
        dropped[NEAR] = sorted(near_copies - set(dropped[EXACT]))
    return report


def summary(report: dict) -> str:
    images = report["images"]
    lines = [
        f"same image in {' and '.join(pair['between'])}: {pair['count']} (e.g. "
        f"{', '.join(pair['examples'])})"
        for pair in images["shared_between_subsets"]
    ]
    for side, dropped in images["drop_from_shards"].items():
        exact, near = images[f"inside_{side}"], images["near"][f"inside_{side}"]
        pairs = sum(p["subset"] == side for p in report["near_duplicates"])
        lines += [
            f"{pairs} near-duplicate pairs of a {side} train/val image and an evaluation image",
            f"{side} photos left out of its shards (their image is in an evaluation set): "
            f"{len(dropped[EXACT])} exact, {len(dropped[NEAR])} near duplicates",
            f"groups of duplicate images inside {side} (kept): {exact['groups']} exact "
            f"({exact['photos']} photos), {near['groups']} near ({near['photos']} photos)",
        ]
    between = images["near"]["between_evaluation_sets"]
    return "\n".join(lines + [f"{len(between)} near-duplicate pairs between evaluation sets"])


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="overlap")
    parser.add_argument(
        "--subsets",
        type=Path,
        nargs="+",
        required=True,
        help="the subsets' tables, <subset>.parquet",
    )
    parser.add_argument(
        "--downloads",
        type=Path,
        nargs="+",
        required=True,
        help="their download reports, in the same order (each in the folder of its images)",
    )
    parser.add_argument(
        "--external-hashes",
        type=Path,
        nargs="*",
        default=[],
        help="the external benchmarks' hashes, <name>.hashes.parquet",
    )
    parser.add_argument("--out", type=Path, required=True, help="the report to write (JSON)")
    parser.add_argument(
        "--pairs", type=Path, help="the near-duplicate pairs as a table to write (.csv; .md beside)"
    )
    args = parser.parse_args(argv)
    hashes = [download.parent / contracts.HASHES for download in args.downloads]
    with cli.running(
        args, inputs=[*args.subsets, *args.downloads, *hashes, *args.external_hashes]
    ) as settings:
        report = check(args.subsets, args.downloads, args.external_hashes, settings)
        write_json(args.out, report)
        if args.pairs:
            write_table(
                pd.DataFrame(report["near_duplicates"], columns=PAIR_COLUMNS),
                args.pairs.with_suffix(""),
                f"Near duplicates within {report['images']['near']['threshold']} bits",
            )
        overlap.fail_on_overlap(report, args.out)
    print(summary(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
