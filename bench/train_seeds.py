"""How much the demo's Table 5 moves when only the training order changes: the tiny-cpu recipe
trained with `--seeds` values of `train.seed` on one month's Train shards (after `make demo`), each
evaluated on the month's benchmarks as the evaluate stage does.

    python bench/train_seeds.py [--snapshot data/snapshots/2024-09-27] [--seeds 0 1 2 3 4]

A Wilson interval in Table 5 is the test images' sampling error for one trained model; a change
to what training reads (its shards' layout or order, its sample set) moves a small model by its
seed-to-seed spread as well, which this measures. Prints top-1 (%) per seed and benchmark, and
ends with each benchmark's range across seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workflow_scripts import train  # noqa: E402
from workflow_scripts.common.config import settings  # noqa: E402
from workflow_scripts.evaluate.stage import evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--snapshot", type=Path, default=REPO / "data" / "snapshots" / "2024-09-27")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    if not (args.snapshot / "shards").is_dir():
        raise SystemExit(f"{args.snapshot}/shards: missing: run make demo first")
    model_name = settings("train", {})["recipes"]["tiny-cpu"]["model"]
    top1 = {}
    with tempfile.TemporaryDirectory() as work:
        for seed in args.seeds:
            model = Path(work) / f"seed-{seed}"
            train.train(
                args.snapshot / "shards" / "train", model, "tiny-cpu", {"seed": seed}, threads=2
            )
            results = evaluate(
                args.snapshot,
                model_name,
                str(model / "checkpoint.pt"),
                Path(work) / f"eval-{seed}",
                settings("evaluate", {}),
            )
            top1[seed] = {
                name: round(100 * scored["top1"], 1)
                for name, scored in results["benchmarks"].items()
            }
            print(f"seed {seed}: {json.dumps(top1[seed])}", flush=True)
    names = top1[args.seeds[0]]
    print(
        "range across seeds: "
        + ", ".join(
            f"{name} {min(t[name] for t in top1.values())}-{max(t[name] for t in top1.values())}"
            for name in names
        )
    )


if __name__ == "__main__":
    main()
