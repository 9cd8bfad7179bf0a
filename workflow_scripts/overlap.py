"""Leak checks between the subsets: fails (exit 1) with a readable report when any is violated.

    python -m workflow_scripts.overlap --subsets data/snapshots/<date>/subsets \\
        --out data/snapshots/<date>/overlap_report.json [--images data/snapshots/<date>/images]

Checks: no photo_id and no observation_uuid shared by two of Train, Balanced, Unseen, LifeStages
or by two of Train's splits; no Unseen species in Train. Each check is a function in CHECKS that
returns its violations.

With --images (after the downloads), the report also has the images' exact duplicates, by the
sha256 of the downloaded bytes: the same image uploaded as two photos. Between subsets, each pair
is listed, and Train's copies of an image that an evaluation subset also has are named in
`drop_from_shards` (the shards rule leaves them out, so no test image is trained on); inside
Train, every group of duplicates is listed.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import duckdb

from workflow_scripts.download import statuses
from workflow_scripts.duck import quote
from workflow_scripts.files import write_json
from workflow_scripts.subsets import SUBSETS
EXAMPLES = 5


def shared(con: duckdb.DuckDBPyConnection, column: str, left: str, right: str, where: str = "") -> dict | None:
    rows = con.execute(f"""SELECT DISTINCT a.{column} FROM {left} AS a JOIN {right} AS b USING ({column})
                           WHERE a.{column} IS NOT NULL {where} ORDER BY 1""").fetchall()
    if not rows:
        return None
    return {"count": len(rows), "examples": [str(r[0]) for r in rows[:EXAMPLES]]}


def ids_shared_between_subsets(con: duckdb.DuckDBPyConnection) -> list[dict]:
    found = []
    for column in ("photo_id", "observation_uuid"):
        for left, right in itertools.combinations(SUBSETS, 2):
            if hit := shared(con, column, left, right):
                found.append({"check": f"{column} shared", "between": [left, right], **hit})
    return found


def ids_shared_between_train_splits(con: duckdb.DuckDBPyConnection) -> list[dict]:
    found = []
    for column in ("photo_id", "observation_uuid"):
        if hit := shared(con, column, "train", "train", "AND a.split <> b.split"):
            found.append({"check": f"{column} in two Train splits", "between": ["train", "train"], **hit})
    return found


def unseen_species_in_train(con: duckdb.DuckDBPyConnection) -> list[dict]:
    hit = shared(con, "taxonomic_name", "(SELECT * FROM unseen WHERE species IS NOT NULL)",
                 "(SELECT * FROM train WHERE species IS NOT NULL)")
    return [{"check": "Unseen species in Train", "between": ["unseen", "train"], **hit}] if hit else []


CHECKS = (ids_shared_between_subsets, ids_shared_between_train_splits, unseen_species_in_train)


def image_duplicates(con: duckdb.DuckDBPyConnection) -> dict:
    """Exact duplicates among the downloaded images (views images_<subset>: photo_id, sha256)."""
    between = []
    for left, right in itertools.combinations(SUBSETS, 2):
        pairs = con.execute(f"""SELECT a.photo_id, b.photo_id FROM images_{left} AS a JOIN images_{right} AS b
                                USING (sha256) ORDER BY 1, 2""").fetchall()
        if pairs:
            between.append({"between": [left, right], "count": len(pairs),
                            "examples": [f"{a}={b}" for a, b in pairs[:EXAMPLES]]})
    evaluation = " UNION ALL ".join(f"SELECT sha256 FROM images_{s}" for s in SUBSETS if s != "train")
    drop = [r[0] for r in con.execute(f"SELECT photo_id FROM images_train WHERE sha256 IN ({evaluation}) "
                                      "ORDER BY 1").fetchall()]
    groups = [r[0] for r in con.execute("""SELECT list(photo_id ORDER BY photo_id) FROM images_train GROUP BY sha256
                                           HAVING count(*) > 1 ORDER BY 1""").fetchall()]
    return {"shared_between_subsets": between, "drop_from_shards": {"train": drop},
            "inside_train": {"groups": len(groups), "photos": sum(map(len, groups)), "photo_ids": groups}}


def check(subsets_dir: Path, images_dir: Path | None = None) -> dict:
    con = duckdb.connect()
    for subset in SUBSETS:
        path = subsets_dir / f"{subset}.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing: build the subsets first")
        con.execute(f"CREATE VIEW {subset} AS SELECT * FROM read_parquet({quote(path)})")
    violations = [v for run in CHECKS for v in run(con)]
    report = {"checks": [c.__name__ for c in CHECKS], "violations": violations, "ok": not violations}
    if images_dir:
        for subset in SUBSETS:
            if not (images_dir / subset / "download_report.json").is_file():
                raise FileNotFoundError(f"{images_dir / subset}: no download_report.json: download the images first")
            con.execute(f"CREATE VIEW images_{subset} AS SELECT photo_id, sha256 "
                        f"FROM {statuses(images_dir / subset / 'tars')} WHERE status = 'success'")
        report["images"] = image_duplicates(con)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.overlap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", type=Path, required=True, help="folder with the four subset Parquet files")
    parser.add_argument("--out", type=Path, required=True, help="overlap_report.json")
    parser.add_argument("--images", type=Path, help="the downloaded images' folder (one folder per subset): "
                        "also find exact duplicate images")
    args = parser.parse_args(argv)
    report = check(args.subsets, args.images)
    write_json(args.out, report)
    for v in report["violations"]:
        print(f"LEAK: {v['check']} between {' and '.join(v['between'])}: {v['count']} "
              f"(e.g. {', '.join(v['examples'])})", file=sys.stderr)
    if images := report.get("images"):
        for pair in images["shared_between_subsets"]:
            print(f"same image in {' and '.join(pair['between'])}: {pair['count']} "
                  f"(e.g. {', '.join(pair['examples'])})", file=sys.stderr)
        print(f"{len(images['drop_from_shards']['train'])} Train photos left out of Train's shards "
              f"(their image is in an evaluation subset); {images['inside_train']['groups']} groups of duplicate "
              f"images inside Train ({images['inside_train']['photos']} photos, kept)", file=sys.stderr)
    if not report["ok"]:
        print(f"subsets overlap: see {args.out}; the subsets must be rebuilt before training", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
