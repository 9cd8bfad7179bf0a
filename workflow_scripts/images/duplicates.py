"""The leak checks again, after the downloads, and exact duplicate images by the sha256 of the
downloaded bytes (img2dataset records it): the same image uploaded as two photos. Between
subsets, each pair is listed, and Train's copies of an image that an evaluation subset also has
are named in `drop_from_shards` (the shards rule leaves them out, so no test image is trained on);
inside Train, every group of duplicates is listed.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import duckdb

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.files import write_json
from workflow_scripts.images.download import downloaded
from workflow_scripts.subsets import overlap

EXAMPLES = overlap.EXAMPLES


def image_duplicates(con: duckdb.DuckDBPyConnection) -> dict:
    """Exact duplicates among the downloaded images (views images_<subset>: photo_id, sha256)."""
    between = []
    for left, right in itertools.combinations(contracts.SUBSETS, 2):
        pairs = con.execute(f"""SELECT a.photo_id, b.photo_id FROM images_{left} AS a JOIN images_{right} AS b
                                USING (sha256) ORDER BY 1, 2""").fetchall()
        if pairs:
            between.append({"between": [left, right], "count": len(pairs),
                            "examples": [f"{a}={b}" for a, b in pairs[:EXAMPLES]]})
    evaluation = " UNION ALL ".join(f"SELECT sha256 FROM images_{s}" for s in contracts.SUBSETS if s != "train")
    drop = [r[0] for r in con.execute(f"SELECT photo_id FROM images_train WHERE sha256 IN ({evaluation}) "
                                      "ORDER BY 1").fetchall()]
    groups = [r[0] for r in con.execute("""SELECT list(photo_id ORDER BY photo_id) FROM images_train GROUP BY sha256
                                           HAVING count(*) > 1 ORDER BY 1""").fetchall()]
    return {"shared_between_subsets": between, "drop_from_shards": {"train": drop},
            "inside_train": {"groups": len(groups), "photos": sum(map(len, groups)), "photo_ids": groups}}


def check(tables: list[Path], downloads: list[Path]) -> dict:
    """The subsets' leak checks and their images' duplicates: `tables`, the subsets' tables, and
    `downloads`, their download reports (in the same order), each beside its chunks' folders."""
    con = overlap.subset_views(tables)
    report = overlap.check(con)
    for subset, download in zip(contracts.subsets_by_name(tables), downloads, strict=True):
        if not download.is_file():
            raise overlap.LeakError(f"{download}: missing: download the images first")
        downloaded(con, download)
        con.execute(f"CREATE TABLE images_{subset} AS SELECT photo_id, sha256 FROM successes")
    report["images"] = image_duplicates(con)
    return report


def summary(images: dict) -> str:
    lines = [f"same image in {' and '.join(pair['between'])}: {pair['count']} (e.g. {', '.join(pair['examples'])})"
             for pair in images["shared_between_subsets"]]
    return "\n".join(lines + [
        f"{len(images['drop_from_shards']['train'])} Train photos left out of Train's shards (their image is in an "
        f"evaluation subset); {images['inside_train']['groups']} groups of duplicate images inside Train "
        f"({images['inside_train']['photos']} photos, kept)"])


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__)
    parser.add_argument("--subsets", type=Path, nargs="+", required=True, help="the subsets' tables, <subset>.parquet")
    parser.add_argument("--downloads", type=Path, nargs="+", required=True,
                        help="their download reports, in the same order (each in the folder of its images)")
    parser.add_argument("--out", type=Path, required=True, help="the report to write (JSON)")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[*args.subsets, *args.downloads]):
        report = check(args.subsets, args.downloads)
        write_json(args.out, report)
        overlap.fail_on_leaks(report, args.out)
    print(summary(report["images"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
