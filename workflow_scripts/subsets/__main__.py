"""Build BioTrove-Train, -Balanced, -Unseen and LifeStages from one curated snapshot (see
workflow_scripts.subsets.build).

    python -m workflow_scripts.subsets --curated data/snapshots/<date>/curated/curated.parquet \\
        --out data/snapshots/<date>/subsets [--config config.yaml]

The settings are config.yaml's `subsets` section, the LifeStages web export (lifestages.export)
among them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from workflow_scripts.common import cli
from workflow_scripts.subsets.build import build


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="subsets")
    parser.add_argument("--curated", type=Path, required=True, help="curated.parquet")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    export = cli.settings(args)["lifestages"]["export"]
    with cli.running(args, inputs=[args.curated, export]) as settings:
        report = build(args.curated, args.out, settings)
    print(json.dumps({k: v.get("images") for k, v in report["subsets"].items()}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
