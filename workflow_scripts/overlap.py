"""Leak checks between the subsets: fails (exit 1) with a readable report when any is violated.

    python -m workflow_scripts.overlap --subsets data/snapshots/<date>/subsets \\
        --out data/snapshots/<date>/subsets/overlap_report.json

Checks: no photo_id and no observation_uuid shared by two of Train, Balanced, Unseen, LifeStages
or by two of Train's splits; no Unseen species in Train. Each check is a function in CHECKS that
returns its violations, so further checks (e.g. on image content) plug into the same rule.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import duckdb

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


def check(subsets_dir: Path) -> dict:
    con = duckdb.connect()
    for subset in SUBSETS:
        path = subsets_dir / f"{subset}.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing: build the subsets first")
        con.execute(f"CREATE VIEW {subset} AS SELECT * FROM read_parquet({quote(path)})")
    violations = [v for run in CHECKS for v in run(con)]
    return {"checks": [c.__name__ for c in CHECKS], "violations": violations, "ok": not violations}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.overlap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", type=Path, required=True, help="folder with the four subset Parquet files")
    parser.add_argument("--out", type=Path, required=True, help="overlap_report.json")
    args = parser.parse_args(argv)
    report = check(args.subsets)
    write_json(args.out, report)
    for v in report["violations"]:
        print(f"LEAK: {v['check']} between {' and '.join(v['between'])}: {v['count']} "
              f"(e.g. {', '.join(v['examples'])})", file=sys.stderr)
    if not report["ok"]:
        print(f"subsets overlap: see {args.out}; the subsets must be rebuilt before training", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
