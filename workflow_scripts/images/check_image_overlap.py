"""The image overlap check: the subsets' overlap checks again (common/overlap.py), after the
downloads, then duplicate images between the subsets: exact ones by the sha256 of the downloaded
bytes (img2dataset records it), near ones by perceptual hash
(workflow_scripts.images.near_duplicates), also against the configured external benchmarks. Each
pair of subsets sharing an image is listed (exact), and so is each Train image within
`overlap.near_duplicate_threshold` of an evaluation image (`near_duplicates`). Train's train and
val copies of an image that an evaluation set has (another subset, Train's test split, and for near
duplicates an external benchmark) are named in `drop_from_shards`, by reason (the shards rules
leave them out, so no test image is trained on); groups of duplicates inside Train are listed, and
kept.

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
from workflow_scripts.common.files import write_json
from workflow_scripts.common.tables import write_table
from workflow_scripts.images.download_chunk import downloaded
from workflow_scripts.images.near_duplicates import near_duplicates

EXAMPLES = overlap.EXAMPLES
EXACT, NEAR = "exact_duplicate", "near_duplicate"  # why a Train photo is left out of Train's shards
PAIR_COLUMNS = ["train", "benchmark", "photo_id", "distance"]


def image_duplicates(con: duckdb.DuckDBPyConnection) -> dict:
    """Exact duplicates among the downloaded images (views images_<subset>: photo_id, sha256)."""
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
    test_split = "SELECT sha256 FROM images_train JOIN train USING (photo_id) WHERE split = 'test'"
    evaluation = " UNION ALL ".join(
        [f"SELECT sha256 FROM images_{s}" for s in contracts.SUBSETS if s != "train"] + [test_split]
    )
    drop = [
        r[0]
        for r in con.execute(f"""SELECT photo_id FROM images_train JOIN train USING (photo_id)
                                 WHERE split != 'test' AND sha256 IN ({evaluation})
                                 ORDER BY 1""").fetchall()
    ]
    groups = [
        r[0]
        for r in con.execute("""SELECT list(photo_id ORDER BY photo_id) FROM images_train
                                GROUP BY sha256 HAVING count(*) > 1 ORDER BY 1""").fetchall()
    ]
    return {
        "shared_between_subsets": between,
        "drop_from_shards": {"train": {EXACT: drop}},
        "inside_train": {
            "groups": len(groups),
            "photos": sum(map(len, groups)),
            "photo_ids": groups,
        },
    }


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
    exact = report["images"]["drop_from_shards"]["train"][EXACT]
    report["images"]["drop_from_shards"]["train"][NEAR] = sorted(
        {p["train"] for p in report["near_duplicates"]} - set(exact)
    )
    return report


def summary(report: dict) -> str:
    images, dropped = report["images"], report["images"]["drop_from_shards"]["train"]
    lines = [
        f"same image in {' and '.join(pair['between'])}: {pair['count']} (e.g. "
        f"{', '.join(pair['examples'])})"
        for pair in images["shared_between_subsets"]
    ]
    return "\n".join(
        lines
        + [
            f"{len(report['near_duplicates'])} near-duplicate pairs of a Train image and an "
            f"evaluation image",
            f"Train photos left out of Train's shards (their image is in an evaluation set): "
            f"{len(dropped[EXACT])} exact, {len(dropped[NEAR])} near duplicates",
            f"groups of duplicate images inside Train (kept): {images['inside_train']['groups']} "
            f"exact ({images['inside_train']['photos']} photos), "
            f"{images['near']['inside_train']['groups']} near "
            f"({images['near']['inside_train']['photos']} photos)",
        ]
    )


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
