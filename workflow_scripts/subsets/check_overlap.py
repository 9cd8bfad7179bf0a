"""Fails the pipeline when two subsets overlap (the checks: common/overlap.py), after writing
the report.

    python -m workflow_scripts.subsets.check_overlap \\
        --subsets data/snapshots/<date>/subsets/*.parquet \\
        --out logs/overlap/<date>.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from workflow_scripts.common import cli
from workflow_scripts.common.files import write_json
from workflow_scripts.common.overlap import check, fail_on_overlap, subset_views


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__)
    parser.add_argument(
        "--subsets",
        type=Path,
        nargs="+",
        required=True,
        help="the subsets' tables, <subset>.parquet",
    )
    parser.add_argument("--out", type=Path, required=True, help="the report to write (JSON)")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=args.subsets):
        report = check(subset_views(args.subsets))
        write_json(args.out, report)
        fail_on_overlap(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
