"""Curate one snapshot with DuckDB (see workflow_scripts.curate.stage).

    python -m workflow_scripts.curate --raw data/snapshots/2024-09-27/raw \\
        --out data/snapshots/2024-09-27/curated \\
        [--config config.yaml] [--taxonomy DWCA] [--threads N]

RAW holds photos, observations and taxa as .csv or .csv.gz (a fetched raw/ folder or an unpacked
monthly bundle) and, unless --taxonomy names it, inaturalist-taxonomy.dwca.zip. The settings are
config.yaml's `curate` section.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workflow_scripts.common import cli
from workflow_scripts.curate.stage import curate, largest_drops


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="curate")
    parser.add_argument(
        "--raw", type=Path, required=True, help="the snapshot's tables (and taxonomy archive)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    parser.add_argument(
        "--taxonomy", type=Path, help="inaturalist-taxonomy.dwca.zip or its folder, if not in RAW"
    )
    parser.add_argument("--threads", type=int, help="DuckDB threads when curate.threads is not set")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[args.raw, args.taxonomy]) as settings:
        report = curate(
            args.raw,
            args.out,
            {**settings, "threads": settings["threads"] or args.threads},
            args.taxonomy,
            args.date,
        )
    rejected = ", ".join(
        f"{table} {count:,}" for table, count in sorted(report["rejected_rows"].items())
    )
    print(
        f"{args.out}: {report['photos_in']:,} photo rows in, {report['photos_out']:,} curated; "
        f"rejected rows (rejects.csv): {rejected}; dropped most: {largest_drops(report, 5)}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
