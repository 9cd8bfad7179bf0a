"""Subset stability between two monthly snapshots: every photo in both curated tables whose subset
or split changed, with the reason (its species was re-identified, crossed a threshold, or changed
size so that a capped, hash-ordered choice moved). Anything else is "unexplained": a bug.

    python -m workflow_scripts.stability --previous data/snapshots/<d1> --current data/snapshots/<d2> \\
        --out data/snapshots/<d2>/stability

Each snapshot folder holds curated/curated.parquet and subsets/. Writes moved.parquet (sorted by
photo_id) and stability_report.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import duckdb

from workflow_scripts.duck import quote, run_sql
from workflow_scripts.files import building, write_json
from workflow_scripts.subsets import SUBSETS, write_parquet


def attach(con: duckdb.DuckDBPyConnection, name: str, snapshot: Path) -> None:
    """Views <name>_curated, <name>_species and <name>_placements (photo_id, subset, split)."""
    subsets = snapshot / "subsets"
    con.execute(f"CREATE VIEW {name}_curated AS SELECT * FROM "
                f"read_parquet({quote(snapshot / 'curated' / 'curated.parquet')})")
    con.execute(f"CREATE VIEW {name}_species AS SELECT * FROM read_parquet({quote(subsets / 'species.parquet')})")
    parts = [f"SELECT photo_id, {quote(subset)} AS subset, {'split' if subset == 'train' else 'NULL'} AS split "
             f"FROM read_parquet({quote(subsets / f'{subset}.parquet')}) WHERE photo_id IS NOT NULL"
             for subset in SUBSETS]
    con.execute(f"CREATE VIEW {name}_placements AS {' UNION ALL '.join(parts)}")


def compare(previous: Path, current: Path, out: Path) -> dict:
    con = duckdb.connect(config={"preserve_insertion_order": True})
    attach(con, "previous", previous)
    attach(con, "current", current)
    run_sql(con, "stability.sql")
    with building(out) as staging:
        write_parquet(con, "SELECT * FROM moved ORDER BY photo_id", staging / "moved.parquet")
        in_both = con.execute("SELECT count(*) FROM current_curated SEMI JOIN previous_curated USING (photo_id)"
                              ).fetchone()[0]
        by_reason = con.execute("""SELECT regexp_replace(reason, ' \\(.*', ''), count(*) FROM moved
                                   GROUP BY 1 ORDER BY 1""").fetchall()
        species = con.execute("""SELECT species, reason, count(*) FROM moved GROUP BY ALL
                                 ORDER BY 3 DESC, 1, 2 LIMIT 100""").fetchall()
        report = {"previous": previous.name, "current": current.name, "photos_in_both": in_both,
                  "moved": sum(r[1] for r in by_reason), "moved_by_reason": dict(by_reason),
                  "top_species": [{"species": r[0], "reason": r[1], "photos": r[2]} for r in species]}
        write_json(staging / "stability_report.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.stability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--previous", type=Path, required=True, help="the earlier snapshot's folder")
    parser.add_argument("--current", type=Path, required=True, help="the later snapshot's folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    report = compare(args.previous, args.current, args.out)
    print(f"{report['moved']} of {report['photos_in_both']} photos moved: "
          f"{json.dumps(report['moved_by_reason'], sort_keys=True)}", file=sys.stderr)
    return 1 if report["moved_by_reason"].get("unexplained") else 0


if __name__ == "__main__":
    sys.exit(main())
