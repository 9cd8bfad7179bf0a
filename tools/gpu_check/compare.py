"""The GPU check's measurements: the project's train wrapper (python -m workflow_scripts.train)
against bare open_clip_train on the same shards with the same flags (train.open_clip_argv writes
both), then the project's evaluation of the checkpoint on the same device.

    python tools/gpu_check/compare.py --data DIR --snapshot DIR --work DIR --out DIR \\
        [--model ViT-B-16] [--precision bf16] [--device cuda] [--batch 512] [--workers 12] [--epochs 3]

--data: make_data.py's output; --snapshot: a month's folder with shards/ and subsets/ (evaluation).
Samples/s per GPU: the median over open_clip's 10-step log lines after epoch 0 (start-up and the
first shards excluded). Writes result.json in --out: both rates, project/bare, the data wait share,
the evaluation's top-1 per benchmark and the wall times; prints it.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from workflow_scripts import train  # noqa: E402
from workflow_scripts.common.config import settings  # noqa: E402

LINE = re.compile(r"Train Epoch: (\d+) .*?Data \(t\): ([\d.]+) Batch \(t\): ([\d.]+), [\d.]+/s, ([\d.]+)/s/gpu")


def rates(log: str) -> dict | None:
    """Median samples/s per GPU and data-wait share over the log lines after epoch 0."""
    found = [(float(per_gpu), float(data) / float(batch)) for epoch, data, batch, per_gpu in LINE.findall(log)
             if int(epoch) >= 1 and float(batch) > 0]
    if not found:
        return None
    return {"intervals": len(found), "median_samples_per_s_per_gpu": round(statistics.median(r for r, _ in found), 1),
            "median_data_wait_share": round(statistics.median(w for _, w in found), 3)}


def timed(command: list[str], log: Path, cwd: Path, timeout: int) -> dict:
    started = time.time()
    with open(log, "w") as out:
        try:
            code = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    return {"rc": code, "wall_s": round(time.time() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("data", "snapshot", "work", "out"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=512, help="per GPU (one GPU)")
    parser.add_argument("--workers", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=400, help="seconds per training run")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    recipe = {**copy.deepcopy(settings("train", {})["recipes"]["bt-clip-o"]), "model": args.model, "pretrained": None,
              "epochs": args.epochs, "global_batch_size": args.batch, "warmup": 100, "precision": args.precision,
              "device": args.device, "workers": args.workers, "gpu": 1,
              "flags": ["--dataset-resampled", "--ddp-static-graph", "--grad-checkpointing"]}
    train_settings = {"recipes": {"gpu-check": recipe}}
    result = {"model": args.model, "precision": args.precision, "device": args.device, "batch_per_gpu": args.batch,
              "workers": args.workers, "epochs": args.epochs}

    model_dir = args.work / "models" / "gpu-check"
    result["project"] = timed([sys.executable, "-m", "workflow_scripts.train", "--shards", str(args.data / "project"),
                               "--out", str(model_dir), "--recipe", "gpu-check", "--settings",
                               json.dumps(train_settings)], args.out / "project.log", REPO, args.timeout)
    log = model_dir / "train.log" if (model_dir / "train.log").exists() else \
        model_dir.with_name("gpu-check.partial") / "out.log"
    result["project"]["rates"] = rates(log.read_text()) if log.exists() else None

    sizes = json.loads((args.data / "bare" / "sizes.json").read_text())
    data = str(args.data / "bare" / f"shard-{{000000..{len(sizes) - 1:06d}}}.tar")
    argv = train.open_clip_argv(recipe, 0, data, sum(sizes.values()), args.work / "logs", "bare", 1)
    result["bare"] = timed([sys.executable, "-m", "open_clip_train.main", *argv], args.out / "bare.log", args.work,
                           args.timeout)
    bare_log = args.work / "logs" / "bare" / "out.log"
    result["bare"]["rates"] = rates(bare_log.read_text()) if bare_log.exists() else None
    project, bare = result["project"]["rates"], result["bare"]["rates"]
    if project and bare:
        result["project_over_bare"] = round(project["median_samples_per_s_per_gpu"] /
                                            bare["median_samples_per_s_per_gpu"], 3)

    checkpoint = model_dir / "checkpoint.pt"
    if checkpoint.exists():
        evaluation = {"device": args.device, "precision": args.precision, "batch_size": args.batch,
                      "workers": args.workers, "models": {}}
        result["evaluate"] = timed([sys.executable, "-m", "workflow_scripts.evaluate", "--snapshot", str(args.snapshot),
                                    "--model", args.model, "--pretrained", str(checkpoint), "--settings",
                                    json.dumps(evaluation), "--out", str(args.work / "eval")],
                                   args.out / "evaluate.log", REPO, args.timeout)
        metrics = args.work / "eval" / "metrics.json"
        if metrics.exists():
            result["evaluate"]["top1"] = {name: scored["top1"] for name, scored in
                                          json.loads(metrics.read_text())["benchmarks"].items()}
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
