"""Fetch one monthly iNaturalist Open Data snapshot (see workflow_scripts.fetch.snapshot).

    python -m workflow_scripts.fetch --snapshot 2024-09-27 --out data/snapshots/2024-09-27/raw
    python -m workflow_scripts.fetch --snapshot latest --out 'data/snapshots/{date}/raw'
    python -m workflow_scripts.fetch --list [--config config.yaml]

The source and its options are config.yaml's `fetch` section (--config, --settings); without them,
the schema's defaults: the public bucket s3://inaturalist-open-data, anonymously.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from workflow_scripts.common import cli
from workflow_scripts.fetch.latest_snapshot import write_resolution
from workflow_scripts.fetch.snapshot import FetchError, available_dates, fetch
from workflow_scripts.fetch.storage import PROBLEMS, open_source


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="fetch")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument(
        "--snapshot", help="YYYY-MM-DD (that month's bundle) or 'latest' (the bucket-root tables)"
    )
    action.add_argument(
        "--resolve",
        metavar="SNAPSHOT",
        help="deprecated: python -m workflow_scripts.fetch.latest_snapshot --snapshot SNAPSHOT",
    )
    action.add_argument(
        "--list", action="store_true", help="print the snapshot dates the source has"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the raw/ folder to write ({date}: the resolved date), or the resolution's JSON file",
    )
    parser.add_argument("--expect-date", help="fail unless the snapshot resolves to this date")
    args = parser.parse_args(argv)
    if not args.list and not args.out:
        parser.error("--out is required with --snapshot and --resolve")
    with cli.running(args, inputs=[]) as settings:
        if args.resolve:
            warnings.warn(
                "--resolve is deprecated: use python -m workflow_scripts.fetch.latest_snapshot",
                FutureWarning,
                stacklevel=1,
            )
            write_resolution(args.resolve, args.out, settings)
            return 0
        try:
            source = open_source(settings["source"], settings)
            if args.list:
                print("\n".join(available_dates(source)))
            else:
                print(fetch(source, args.snapshot, args.out, settings, args.expect_date))
        except PROBLEMS as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
