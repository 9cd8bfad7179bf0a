"""The overlap checks between the subsets: no photo_id and no observation_uuid shared by two of
Train, Balanced, Unseen, LifeStages and genus_sampled, or by two splits of Train or of
genus_sampled; no Unseen species in Train; no genus_sampled genus in Train, Balanced or Unseen.
Each check is a function in CHECKS that returns its violations. The subsets' own rule runs them
(subsets/check_overlap.py), and the image overlap check again beside its image checks
(images/check_image_overlap.py); a violation fails either after its report is written.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import duckdb

from workflow_scripts.common import contracts
from workflow_scripts.common.cli import StageError
from workflow_scripts.common.duck import quote
from workflow_scripts.common.taxonomy import lineage_key_sql

EXAMPLES = 5


class OverlapError(StageError):
    """Two subsets share what must be apart."""


def shared(
    con: duckdb.DuckDBPyConnection, column: str, left: str, right: str, where: str = ""
) -> dict | None:
    rows = con.execute(f"""SELECT DISTINCT a.{column}
                           FROM {left} AS a JOIN {right} AS b USING ({column})
                           WHERE a.{column} IS NOT NULL {where} ORDER BY 1""").fetchall()
    if not rows:
        return None
    return {"count": len(rows), "examples": [str(r[0]) for r in rows[:EXAMPLES]]}


def ids_shared_between_subsets(con: duckdb.DuckDBPyConnection) -> list[dict]:
    found = []
    for column in ("photo_id", "observation_uuid"):
        for left, right in itertools.combinations(contracts.SUBSETS, 2):
            if hit := shared(con, column, left, right):
                found.append({"check": f"{column} shared", "between": [left, right], **hit})
    return found


def ids_shared_between_splits(con: duckdb.DuckDBPyConnection) -> list[dict]:
    found = []
    for subset, column in itertools.product(
        contracts.SPLIT_SUBSETS, ("photo_id", "observation_uuid")
    ):
        if hit := shared(con, column, subset, subset, "AND a.split <> b.split"):
            found.append(
                {"check": f"{column} in two {subset} splits", "between": [subset, subset], **hit}
            )
    return found


def unseen_species_in_train(con: duckdb.DuckDBPyConnection) -> list[dict]:
    hit = shared(
        con,
        "taxonomic_name",
        "(SELECT * FROM unseen WHERE species IS NOT NULL)",
        "(SELECT * FROM train WHERE species IS NOT NULL)",
    )
    return (
        [{"check": "Unseen species in Train", "between": ["unseen", "train"], **hit}] if hit else []
    )


def genus_sampled_genera_elsewhere(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """A drawn genus (its lineage down to genus) must be in no other subset drawn from the same
    pool."""
    genus = f"{lineage_key_sql('genus')} AS genus_key"
    found = []
    for other in ("train", "balanced", "unseen"):
        if hit := shared(
            con,
            "genus_key",
            f"(SELECT {genus} FROM {contracts.GENUS_SAMPLED})",
            f"(SELECT {genus} FROM {other} WHERE genus IS NOT NULL)",
        ):
            found.append(
                {
                    "check": "genus_sampled genus in another subset",
                    "between": [contracts.GENUS_SAMPLED, other],
                    **hit,
                }
            )
    return found


CHECKS = (
    ids_shared_between_subsets,
    ids_shared_between_splits,
    unseen_species_in_train,
    genus_sampled_genera_elsewhere,
)


def subset_views(tables: list[Path]) -> duckdb.DuckDBPyConnection:
    """A connection with one view per subset, named after it (tables: <subset>.parquet each)."""
    con = duckdb.connect()
    for subset, path in contracts.subsets_by_name(tables).items():
        if not Path(path).is_file():
            raise OverlapError(f"{path}: missing: build the subsets first")
        con.execute(f"CREATE VIEW {subset} AS SELECT * FROM read_parquet({quote(path)})")
    return con


def check(con: duckdb.DuckDBPyConnection) -> dict:
    violations = [v for run in CHECKS for v in run(con)]
    return {"checks": [c.__name__ for c in CHECKS], "violations": violations, "ok": not violations}


def fail_on_overlap(report: dict, where: Path) -> None:
    """Name every violation on stderr; an OverlapError if there is one (the report is already
    written)."""
    for v in report["violations"]:
        print(
            f"OVERLAP: {v['check']} between {' and '.join(v['between'])}: {v['count']} "
            f"(e.g. {', '.join(v['examples'])})",
            file=sys.stderr,
        )
    if not report["ok"]:
        raise OverlapError(
            f"the subsets overlap (see {where}): they must be rebuilt before training"
        )
