"""Zero-shot evaluation of one model on a snapshot's benchmarks (see
workflow_scripts.evaluate.stage).

    python -m workflow_scripts.evaluate \\
        --shards data/snapshots/<date>/shards/{train,balanced,unseen,lifestages} \\
        --tables data/snapshots/<date>/subsets/{train,balanced,unseen,lifestages}.parquet \\
        --model biotrove-tiny --pretrained models/<date>/tiny-cpu/checkpoint.pt \\
        --out results/<date>/eval/tiny-cpu [--config config.yaml]

--shards and --tables: the shards folder (shards/<subset>) and table (<subset>.parquet) of each of
our benchmarks (evaluate.benchmarks), in any order; the external benchmarks are read as
evaluate.external names them. --pretrained: an open_clip tag or a checkpoint file; empty or left
out: random init (a control). The settings are config.yaml's `evaluate` section.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.benchmarks import SUBSET_BENCHMARKS, benchmark_inputs
from workflow_scripts.evaluate.stage import evaluate


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="evaluate")
    parser.add_argument(
        "--shards",
        type=Path,
        nargs="*",
        default=[],
        help="each of our benchmarks' shards folder (shards/<subset>)",
    )
    parser.add_argument(
        "--tables",
        type=Path,
        nargs="*",
        default=[],
        help="each of our benchmarks' table (subsets/<subset>.parquet)",
    )
    parser.add_argument(
        "--model", required=True, help="open_clip model name (or one of our model configs)"
    )
    parser.add_argument(
        "--pretrained", help="open_clip pretrained tag or a checkpoint file; none: random init"
    )
    parser.add_argument("--out", type=Path, required=True, help="the evaluation folder to write")
    args = parser.parse_args(argv)
    settings = cli.settings(args)
    try:
        subsets = contracts.subset_inputs(args.shards, args.tables)
    except ValueError as exc:
        parser.error(f"--shards, --tables: {exc}")
    names = contracts.benchmark_names(settings)
    missing = [name for name in names if name in SUBSET_BENCHMARKS and name not in subsets]
    if missing:
        parser.error(
            f"--shards, --tables: none given of the benchmarks {', '.join(missing)} "
            f"(evaluate.benchmarks)"
        )
    inputs = [path for name in names for path in benchmark_inputs(name, subsets, settings)]
    checkpoint = (
        Path(args.pretrained) if args.pretrained and Path(args.pretrained).is_file() else None
    )
    with cli.running(
        args,
        inputs=[*inputs, checkpoint],
        recorded={**settings, "model": args.model, "pretrained": args.pretrained},
    ) as settings:
        results = evaluate(subsets, args.model, args.pretrained or None, args.out, settings)
    print(
        json.dumps({name: scored["top1"] for name, scored in results["benchmarks"].items()}),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
