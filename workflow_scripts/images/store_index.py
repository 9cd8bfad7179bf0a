"""The image store's index after a snapshot (images/store.py): every image its subsets' chunks hold,
reused or new, and what the store keeps from earlier snapshots (the images the last
`images.store_snapshots` used), the images of packs they fill less than `images.store_repack_below`
of copied into new packs; with a report: this snapshot's images by origin, the previous snapshot's
images it no longer uses, the entries that expired, what was repacked, and the store's size before
and after.

    python -m workflow_scripts.images.store_index \\
        --chunks data/snapshots/<date>/images/*/chunks/* --store data/store \\
        [--previous-index data/store/index/<earlier date>.parquet] \\
        --out data/store/index/<date>.parquet --report data/store/index/<date>.report.json \\
        --date <date> [--config config.yaml]
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import duckdb

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.files import write_json
from workflow_scripts.images.store import write_index


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="images")
    parser.add_argument(
        "--chunks", type=Path, nargs="*", default=[], help="every subset's chunk folders"
    )
    parser.add_argument("--store", type=Path, required=True, help="the image store's folder")
    parser.add_argument(
        "--previous-index", type=Path, help="the index after the previous snapshot (if any)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the index to write (Parquet)")
    parser.add_argument("--report", type=Path, required=True, help="its report (JSON)")
    args = parser.parse_args(argv)
    if not args.date:
        parser.error("--date is required: the snapshot the index is for")
    manifests = [chunk / contracts.CHUNK_IMAGES for chunk in args.chunks]
    with cli.running(args, inputs=[*manifests, args.previous_index]) as settings:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = write_index(
            duckdb.connect(),
            manifests,
            args.previous_index,
            date.fromisoformat(args.date),
            settings["store_snapshots"],
            args.store,
            args.out,
            settings["store_repack_below"],
            settings["pack_megabytes"],
        )
        write_json(args.report, report)
    print(json.dumps(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
