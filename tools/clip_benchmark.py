"""LAION's clip_benchmark command line, able to load our model configs, under the numpy we pin.

    python -m tools.clip_benchmark eval --dataset wds/balanced \\
        --dataset_root data/snapshots/<date>/exports/clip_benchmark/balanced \\
        --model biotrove-tiny --pretrained models/<date>/tiny-cpu/checkpoint.pt --no_amp \\
        --output result.json

Arguments are clip_benchmark's own (`clip_benchmark eval --help`). Two things differ from running
`clip_benchmark` itself:
- our model configs (workflow_scripts/common/model_configs/) are registered first, so a model
  trained by the pipeline loads by its name (open_clip's own models need nothing);
- clip_benchmark 1.6.2 (its last release) computes accuracy with float() of a 1-element array,
  an error since numpy 2.4; we cannot pin numpy below 2.4 (the SLURM executor plugin needs
  >= 2.4.5), so its accuracy() is replaced by the same sum taken with .item().
"""

from __future__ import annotations

import sys


def accuracy(output, target, topk=(1,)):
    """clip_benchmark's accuracy(): top-k hits / examples, for each k."""
    predicted = output.topk(max(topk), 1, True, True)[1].t()
    correct = predicted.eq(target.view(1, -1).expand_as(predicted))
    return [correct[:k].reshape(-1).float().sum().item() / len(target) for k in topk]


def main() -> int:
    from clip_benchmark import cli
    from clip_benchmark.metrics import zeroshot_classification

    from workflow_scripts.common.models import register_model_configs

    register_model_configs()
    zeroshot_classification.accuracy = accuracy
    return cli.main() or 0


if __name__ == "__main__":
    sys.exit(main())
