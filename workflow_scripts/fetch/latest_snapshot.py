"""The date a snapshot name stands for now (`latest`: the bucket root's tables), asked of the
source, as JSON: requested, snapshot (the date), method and detail (how it was told).

    python -m workflow_scripts.fetch.latest_snapshot --out data/snapshots/latest.json \\
        [--snapshot latest] [--config config.yaml]

The source and its options are config.yaml's `fetch` section, as for the fetch itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from workflow_scripts.common import cli
from workflow_scripts.common.files import write_json
from workflow_scripts.fetch.snapshot import FetchError, resolve
from workflow_scripts.fetch.storage import PROBLEMS, open_source


def write_resolution(snapshot: str, out: Path, settings: dict) -> str:
    """Ask the configured source what `snapshot` stands for, write it to `out`; returns the date."""
    try:
        resolution = resolve(open_source(settings["source"], settings), snapshot, settings)
    except PROBLEMS as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from exc
    write_json(
        out,
        {
            "requested": snapshot,
            "snapshot": resolution.date,
            "method": resolution.method,
            "detail": resolution.detail,
        },
    )
    return resolution.date


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="fetch")
    parser.add_argument(
        "--snapshot", default="latest", help="the name to resolve (default: latest)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the resolution's JSON file")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[]) as settings:
        date = write_resolution(args.snapshot, args.out, settings)
    print(f"{args.snapshot}: {date}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
