"""Train one CLIP recipe on a subset's shards with open_clip_train, in this process.

    python -m workflow_scripts.train --shards data/snapshots/<date>/shards/train \\
        --out models/<date>/<recipe> --recipe NAME [--config config.yaml] [--threads N]

The settings are config.yaml's `train` section; the recipe is `train.recipes[NAME]`. The project's
model configs (workflow_scripts/common/model_configs/) are registered first, so a recipe may name
one. open_clip_train then runs with the recipe's flags in `<out>.partial/`, always with
`--resume latest`: a crashed run started again resumes from its last whole checkpoint (one cut
short by the crash is removed first), and a finished
one is never silently skipped (open_clip's "Experiment already exists" no-op cannot happen).
When training ends, `<out>/` gets `checkpoint.pt` (the last epoch's weights, which open_clip's
`--pretrained` and create_model read), `argv.json` (the exact
open_clip arguments), `metrics.json` and `train.log`; the partial folder is removed.

Two things open_clip_train 3.3.0 leaves open are set here, in its webdataset pipeline:
- its per-sample shuffle is unseeded (seeded from pid and time): it gets `train.seed`, so runs at
  a fixed thread count give bitwise-identical checkpoints;
- it reads one caption, `txt`: each sample gets the caption of a type drawn, seeded, from
  `train.caption_types` per batch or per sample (the paper's `text_type random`).
It reads the shard set of Train's `train` split (contracts.shard_set): no sample is decoded to be
filtered out.
Under torchrun or srun every rank runs this module; rank 0 writes the outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import random
import re
import shutil
import sys
from pathlib import Path

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.config import settings as train_settings
from workflow_scripts.common.files import building, write_json
from workflow_scripts.common.models import register_model_configs

SPLIT = "train"


class TrainError(cli.StageError):
    """A training run that cannot start or did not finish; the message says what to do."""


def shard_pattern(shards: Path, workers: int, world_size: int) -> str:
    """open_clip's --train-data for a shard set's folder: `shard-{000000..N}.tar`, checked against
    its sizes.json."""
    sizes = json.loads((shards / contracts.SHARD_SIZES).read_text())
    if len(sizes) < max(1, workers) * world_size:
        raise TrainError(
            f"{shards}: {len(sizes)} shards for {max(1, workers)} workers x {world_size} "
            f"processes: lower the recipe's workers or shards.samples_per_shard"
        )
    last = len(sizes) - 1
    return str(shards / (f"shard-{{000000..{last:06d}}}.tar" if last else "shard-000000.tar"))


def open_clip_argv(
    recipe: dict, seed: int, data: str, samples: int, logs: Path, name: str, world_size: int
) -> list[str]:
    """The recipe as open_clip_train arguments. The recipe's batch size is global: each of the
    world_size processes gets its share."""
    if world_size > 1 and recipe["device"] == "cpu":
        raise TrainError(
            f"{world_size} processes on the CPU: open_clip_train's DDP wraps the model for GPUs "
            f"only (device_ids), so run one process (gpu: 0, nodes: 1) or train on GPUs"
        )
    if recipe["global_batch_size"] % world_size:
        raise TrainError(
            f"global_batch_size {recipe['global_batch_size']} does not split over {world_size} "
            "processes: make it a multiple of gpus x nodes"
        )
    argv = [
        "--train-data",
        data,
        "--dataset-type",
        "webdataset",
        "--train-num-samples",
        str(samples),
        "--model",
        recipe["model"],
        "--epochs",
        str(recipe["epochs"]),
        "--batch-size",
        str(recipe["global_batch_size"] // world_size),
        "--lr",
        str(recipe["lr"]),
        "--wd",
        str(recipe["wd"]),
        "--beta1",
        str(recipe["beta1"]),
        "--beta2",
        str(recipe["beta2"]),
        "--eps",
        str(recipe["eps"]),
        "--warmup",
        str(recipe["warmup"]),
        "--precision",
        recipe["precision"],
        "--device",
        recipe["device"],
        "--workers",
        str(recipe["workers"]),
        "--seed",
        str(seed),
        "--logs",
        str(logs),
        "--name",
        name,
        "--resume",
        "latest",
        "--save-frequency",
        "1",
        "--delete-previous-checkpoint",
        "--zeroshot-frequency",
        "0",
        "--val-frequency",
        "0",
        "--report-to",
        "",
        "--log-every-n-steps",
        "10",
    ]
    if recipe["pretrained"]:
        argv += ["--pretrained", recipe["pretrained"]]
    return argv + list(recipe["flags"])


def caption_stage(seed: int, caption_types: list[str], per: str, batch_size: int):
    """What open_clip's per-sample shuffle becomes: the samples shuffled with a seeded RNG, each
    given `txt`: the caption of a type drawn per batch (every batch_size samples, in the order
    batches are cut) or per sample; a GIF passed on where open_clip_train looks for images."""
    from torch.utils.data import get_worker_info
    from webdataset.filters import _shuffle

    keys = [f"{kind.lower()}.txt" for kind in caption_types]  # webdataset lowercases extensions

    def stage(bufsize: int, initial: int):
        def run(samples):
            worker = get_worker_info().id if get_worker_info() else 0
            shuffle_rng, caption_rng = (
                random.Random(f"{seed}-{worker}"),
                random.Random(f"{seed}-captions-{worker}"),
            )
            key = None
            for number, sample in enumerate(_shuffle(samples, bufsize, initial, rng=shuffle_rng)):
                if per == "sample" or number % batch_size == 0:
                    key = caption_rng.choice(keys)
                sample["txt"] = sample[key]
                if (
                    "gif" in sample
                ):  # open_clip_train drops any image not jpg/jpeg/png/webp; PIL reads GIF bytes
                    sample["png"] = sample.pop("gif")  # by their content under any key
                yield sample

        return run

    return stage


@contextlib.contextmanager
def captioned_shuffle(seed: int, caption_types: list[str], per: str, batch_size: int):
    """open_clip_train's webdataset pipeline with caption_stage in place of its per-sample shuffle
    (it calls `wds.shuffle`, the webdataset module's own) while inside; restored on exit."""
    import open_clip_train.data

    original = open_clip_train.data.wds.shuffle
    open_clip_train.data.wds.shuffle = caption_stage(seed, caption_types, per, batch_size)
    try:
        yield
    finally:
        open_clip_train.data.wds.shuffle = original


def drop_unreadable_checkpoints(folder: Path) -> list[str]:
    """open_clip saves checkpoints in place: a job killed while saving leaves a truncated file that
    `--resume latest` would pick and fail on. Remove those, newest first, down to a whole one."""
    import torch

    def epoch(path: Path) -> int:
        found = re.search(r"(\d+)", path.stem)
        return int(found.group(1)) if found else -1

    dropped = []
    for path in sorted(folder.glob("*.pt"), key=epoch, reverse=True):
        try:
            torch.load(path, map_location="cpu", weights_only=False)
            break
        except (RuntimeError, EOFError, pickle.UnpicklingError):
            path.unlink()
            dropped.append(path.name)
    return dropped


def rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", os.environ.get("SLURM_NTASKS", "1")))


def final_loss(log: str) -> float | None:
    losses = re.findall(r"Contrastive_loss: [\d.]+ \(([\d.]+)\)", log)
    return float(losses[-1]) if losses else None


def train(
    shards: Path, out: Path, name: str, settings: dict | None = None, threads: int | None = None
) -> dict:
    import open_clip_train.main
    import torch

    settings = train_settings("train", settings)
    if name not in settings["recipes"]:
        raise TrainError(f"no recipe {name!r} in train.recipes ({', '.join(settings['recipes'])})")
    recipe = settings["recipes"][name]
    if threads:
        torch.set_num_threads(threads)
    register_model_configs()
    split = Path(contracts.shard_set(str(shards), SPLIT))
    samples = sum(json.loads((split / contracts.SHARD_SIZES).read_text()).values())
    partial = out.with_name(out.name + ".partial")
    argv = open_clip_argv(
        recipe,
        settings["seed"],
        shard_pattern(split, recipe["workers"], world_size()),
        samples,
        partial.parent,
        partial.name,
        world_size(),
    )
    recorded = partial / "argv.json"
    if rank() == 0:
        if recorded.exists() and json.loads(recorded.read_text()) != argv:
            raise TrainError(
                f"{partial} holds an interrupted run with other settings: remove it to start "
                f"afresh, or restore the settings to resume it"
            )
        partial.mkdir(parents=True, exist_ok=True)
        write_json(recorded, argv)
        if dropped := drop_unreadable_checkpoints(partial / "checkpoints"):
            print(
                f"train: removed unreadable checkpoints of an interrupted run: "
                f"{', '.join(dropped)}",
                file=sys.stderr,
            )
    with captioned_shuffle(
        settings["seed"],
        settings["caption_types"],
        settings["caption_choice"],
        recipe["global_batch_size"] // world_size(),
    ):
        stopped = open_clip_train.main.main(argv) == -1
    if stopped:
        raise TrainError(f"open_clip_train stopped early: see {partial / 'out.log'}")
    if rank():
        return {}
    checkpoint = partial / "checkpoints" / f"epoch_{recipe['epochs']}.pt"
    if not checkpoint.exists():
        raise TrainError(f"{checkpoint}: missing after training: see {partial / 'out.log'}")
    log = (partial / "out.log").read_text()
    metrics = {
        "recipe": name,
        "epochs": recipe["epochs"],
        "samples_per_epoch": samples,
        "final_loss": final_loss(log),
    }
    with building(out) as staging:
        final = torch.load(checkpoint, map_location="cpu", weights_only=False)
        torch.save(
            {k: final[k] for k in ("epoch", "name", "state_dict")}, staging / contracts.CHECKPOINT
        )  # no optimizer
        shutil.copyfile(recorded, staging / contracts.TRAIN_ARGV)
        (staging / "train.log").write_text(log)
        write_json(staging / contracts.METRICS, metrics)
    shutil.rmtree(partial)
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="train")
    parser.add_argument(
        "--shards", type=Path, required=True, help="Train's shards folder (its train/ is read)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write")
    parser.add_argument("--recipe", required=True, help="a key of train.recipes")
    parser.add_argument("--threads", type=int, help="torch CPU threads (also set OMP_NUM_THREADS)")
    args = parser.parse_args(argv)
    if rank():
        args.provenance = None  # rank 0 writes the outputs
    with cli.running(args, inputs=[args.shards]) as settings:
        metrics = train(args.shards, args.out, args.recipe, settings, args.threads)
    print(json.dumps(metrics), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
