"""The GPU check's measurements: the project's train wrapper (python -m workflow_scripts.train)
against bare open_clip_train on the same shards with the same flags (train.open_clip_argv writes
both), then the project's evaluation of the checkpoint on the same device.

    python tools/gpu_check/compare.py --data DIR --snapshot DIR --work DIR --out DIR \\
        [--budget 420] [--model ViT-B-16] [--precision bf16] [--device cuda] [--batch 512] \\
        [--workers 12] [--epochs 3]

--data: make_data.py's output; --snapshot: a month's folder with shards/ and subsets/ (evaluation
reads BENCHMARKS from it: Train's test split and LifeStages, Table 8 on Train).
Samples/s per GPU: per open_clip log line (one per 10 steps), the per-GPU batch over the line's
`Batch (t)`, the batch time averaged over its window; the median over the lines after epoch 0
(start-up and the first shards excluded). open_clip's own `/s/gpu` figure is not used: it is the
window's last step alone.
--budget: seconds for the three stages together (project training, bare training, evaluation),
shared 2:2:1 of what is left when each starts, so time a stage does not use goes to the next; a
stage past its share is stopped with its process group (DataLoader workers included) and its log
still read. result.json in --out is written after each stage (a stopped check keeps what it has):
both rates, project/bare, the data wait share, the evaluation's top-1 per benchmark, each stage's
exit status, share and wall time; printed at the end.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from workflow_scripts import train  # noqa: E402
from workflow_scripts.common import contracts  # noqa: E402
from workflow_scripts.common.config import settings  # noqa: E402

# open_clip_train 3.3.0 train.py's log line: "Train Epoch: {epoch} [{n}/{N} ({p}%)] Data (t):
# {avg:.3f} Batch (t): {avg:.3f}, {last step's samples/s:#g}/s, {last step's per GPU:#g}/s/gpu LR:
# ..."
LINE = re.compile(r"Train Epoch: (\d+) \[[^\]]*\] Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+),")
BENCHMARKS = [
    "train",
    "lifestages",
]  # what prepare.sh carries (subsets and shard sets) and evaluation reads
LEVELS_BENCHMARK = "train"
SHARES = {
    "project": 2,
    "bare": 2,
    "evaluate": 1,
}  # the budget's split, of what is left when a stage starts
MARGIN = 10  # seconds kept back from each share: stopping a stage and writing result.json
MINIMUM = 20  # a stage with a share below this is skipped
GRACE = 10  # seconds between SIGTERM and SIGKILL for a stage past its share


def rates(log: str, batch_per_gpu: int) -> dict | None:
    """Median samples/s per GPU (batch_per_gpu over each log line's window-averaged batch time) and
    median data-wait share (data time over batch time) over the log lines after epoch 0."""
    found = [
        (batch_per_gpu / float(batch), float(data) / float(batch))
        for epoch, data, batch in LINE.findall(log)
        if int(epoch) >= 1 and float(batch) > 0
    ]
    if not found:
        return None
    return {
        "intervals": len(found),
        "median_samples_per_s_per_gpu": round(statistics.median(r for r, _ in found), 1),
        "median_data_wait_share": round(statistics.median(w for _, w in found), 3),
    }


def project_over_bare(project: dict | None, bare: dict | None) -> float | None:
    if not project or not bare:
        return None
    return round(project["median_samples_per_s_per_gpu"] / bare["median_samples_per_s_per_gpu"], 3)


def share(left: float, stage: str, done: list[str]) -> float:
    """A stage's seconds: its share of what is left among the stages not yet run, less MARGIN."""
    pending = sum(weight for name, weight in SHARES.items() if name not in done)
    return max(0.0, left * SHARES[stage] / pending - MARGIN)


def timed(command: list[str], log: Path, cwd: Path, timeout: float) -> dict:
    """Run `command` in its own process group, output to `log`; past `timeout` seconds the whole
    group (its DataLoader workers too) gets SIGTERM, then SIGKILL after GRACE."""
    started = time.monotonic()
    timed_out = False
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=GRACE)
                    break
                except subprocess.TimeoutExpired:
                    continue
            process.wait()
    return {
        "rc": process.returncode,
        "timed_out": timed_out,
        "timeout_s": round(timeout, 1),
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name in ("data", "snapshot", "work", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=512, help="per GPU (one GPU)")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--budget", type=float, default=420, help="seconds for the three stages together"
    )
    parser.add_argument(
        "--setup-s", type=float, help="seconds check.sh spent before this (recorded)"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget
    recipe = {
        **copy.deepcopy(settings("train", {})["recipes"]["bt-clip-o"]),
        "model": args.model,
        "pretrained": None,
        "epochs": args.epochs,
        "global_batch_size": args.batch,
        "warmup": 100,
        "precision": args.precision,
        "device": args.device,
        "workers": args.workers,
        "gpu": 1,
        "flags": ["--dataset-resampled", "--ddp-static-graph", "--grad-checkpointing"],
    }
    train_settings = {"recipes": {"gpu-check": recipe}}
    result = {
        "model": args.model,
        "precision": args.precision,
        "device": args.device,
        "batch_per_gpu": args.batch,
        "workers": args.workers,
        "epochs": args.epochs,
        "budget_s": args.budget,
        "setup_s": args.setup_s,
        "done": [],
    }

    def save(stage: str) -> None:
        result["done"].append(stage)
        result["budget_left_s"] = round(deadline - time.monotonic(), 1)
        (args.out / "result.json.tmp").write_text(json.dumps(result, indent=1))
        (args.out / "result.json.tmp").replace(args.out / "result.json")

    def run(stage: str, command: list[str], cwd: Path) -> dict | None:
        seconds = share(deadline - time.monotonic(), stage, result["done"])
        if seconds < MINIMUM:
            result[stage] = {"skipped": f"{seconds:.0f} s of the budget left for it"}
            return None
        result[stage] = timed(command, args.out / f"{stage}.log", cwd, seconds)
        return result[stage]

    model_dir = args.work / "models" / "gpu-check"
    if run(
        "project",
        [
            sys.executable,
            "-m",
            "workflow_scripts.train",
            "--shards",
            str(args.data / "project"),
            "--out",
            str(model_dir),
            "--recipe",
            "gpu-check",
            "--settings",
            json.dumps(train_settings),
        ],
        REPO,
    ):
        log = (
            model_dir / "train.log"
            if (model_dir / "train.log").exists()
            else model_dir.with_name("gpu-check.partial") / "out.log"
        )
        result["project"]["rates"] = rates(log.read_text(), args.batch) if log.exists() else None
    save("project")

    sizes = json.loads((args.data / "bare" / "sizes.json").read_text())
    data = str(args.data / "bare" / f"shard-{{000000..{len(sizes) - 1:06d}}}.tar")
    argv = train.open_clip_argv(recipe, 0, data, sum(sizes.values()), args.work / "logs", "bare", 1)
    if run("bare", [sys.executable, "-m", "open_clip_train.main", *argv], args.work):
        bare_log = args.work / "logs" / "bare" / "out.log"
        result["bare"]["rates"] = (
            rates(bare_log.read_text(), args.batch) if bare_log.exists() else None
        )
    result["project_over_bare"] = project_over_bare(
        result["project"].get("rates"), result["bare"].get("rates")
    )
    save("bare")

    # the project's checkpoint; if its run was stopped, bare open_clip's last whole epoch
    checkpoint = model_dir / "checkpoint.pt"
    if not checkpoint.exists():
        saved = sorted(
            (args.work / "logs" / "bare" / "checkpoints").glob("epoch_*.pt"),
            key=lambda path: int(re.sub(r"\D", "", path.stem) or -1),
        )
        checkpoint = saved[-1] if saved else None
    if checkpoint is None:
        result["evaluate"] = {"skipped": "no checkpoint"}
    else:
        evaluation = {
            "device": args.device,
            "precision": args.precision,
            "batch_size": args.batch,
            "workers": args.workers,
            "benchmarks": BENCHMARKS,
            "levels_benchmark": LEVELS_BENCHMARK,
            "models": {},
        }
        if run(
            "evaluate",
            [
                sys.executable,
                "-m",
                "workflow_scripts.evaluate",
                "--shards",
                *(contracts.shards(str(args.snapshot), name) for name in BENCHMARKS),
                "--tables",
                *(contracts.subset_table(str(args.snapshot), name) for name in BENCHMARKS),
                "--model",
                args.model,
                "--pretrained",
                str(checkpoint),
                "--settings",
                json.dumps(evaluation),
                "--out",
                str(args.work / "eval"),
            ],
            REPO,
        ):
            result["evaluate"]["checkpoint"] = str(checkpoint.relative_to(args.work))
            metrics = args.work / "eval" / "metrics.json"
            if metrics.exists():
                result["evaluate"]["top1"] = {
                    name: scored["top1"]
                    for name, scored in json.loads(metrics.read_text())["benchmarks"].items()
                }
    save("evaluate")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
