"""The GPU check's measuring (tools/gpu_check/compare.py): samples/s per GPU from open_clip_train's
log lines, project/bare, the budget's split and stopping a stage with its workers."""

from __future__ import annotations

import importlib.util
import math
import os
import statistics
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location(
    "gpu_check_compare", REPO / "tools" / "gpu_check" / "compare.py"
)
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)


def log_line(
    epoch: int,
    batch_count: int,
    batches_per_epoch: int,
    batch_size: int,
    data_avg: float,
    batch_avg: float,
    batch_last: float,
    world_size: int = 1,
) -> str:
    """A line as open_clip_train 3.3.0 writes it (train.py's logging.info in train_one_epoch, behind
    its logger's '%(asctime)s | %(levelname)s | ' prefix): the times are the window's averages, the
    rates the window's last step's."""
    samples_per_epoch = batches_per_epoch * batch_size * world_size
    sample_digits = math.ceil(math.log(samples_per_epoch + 1, 10))
    num_samples = batch_count * batch_size * world_size
    percent_complete = 100.0 * batch_count / batches_per_epoch
    samples_per_second = batch_size * world_size / batch_last
    samples_per_second_per_gpu = batch_size / batch_last
    return (
        "2025-06-01,12:00:00 | INFO | "
        f"Train Epoch: {epoch} [{num_samples:>{sample_digits}}/{samples_per_epoch} "
        f"({percent_complete:.0f}%)] "
        f"Data (t): {data_avg:.3f} "
        f"Batch (t): {batch_avg:.3f}, {samples_per_second:#g}/s, "
        f"{samples_per_second_per_gpu:#g}/s/gpu "
        f"LR: {0.0005:5f} "
        f"Logit Scale: {14.286:.3f} " + f"Contrastive_loss: {6.1234:#.5g} ({6.2345:#.5g})"
    )


def a_log(batch_avgs: list[float], batch_last: float, data_avg: float, epochs: int = 3) -> str:
    """Three epochs of 47 batches of 512, a line every 10 steps; epoch 0 slow (start-up)."""
    lines = ["2025-06-01,11:59:00 | INFO | Start epoch 0"]
    for epoch in range(epochs):
        for number, batch_count in enumerate((1, 11, 21, 31, 41, 47)):
            avg = 2.0 if epoch == 0 else batch_avgs[number % len(batch_avgs)]
            lines.append(log_line(epoch, batch_count, 47, 512, data_avg, avg, batch_last))
    return "\n".join(lines) + "\n"


def test_a_real_log_line_parses():
    line = log_line(1, 11, 47, 512, 0.012, 0.205, 0.5)
    assert (
        "Batch (t): 0.205, 1024.00/s, 1024.00/s/gpu LR:" in line
    )  # the last step's rate, not the window's
    assert compare.rates(line, 512) == {
        "intervals": 1,
        "median_samples_per_s_per_gpu": round(512 / 0.205, 1),
        "median_data_wait_share": round(0.012 / 0.205, 3),
    }
    # a line of the project's train.log from a CPU run of this check (batch 8): 10.2 samples/s over
    # the window, where the last step alone says 14.8
    seen = (
        "2026-11-29,02:45:56 | INFO | Train Epoch: 1 [168/256 (66%)] Data (t): 0.006 Batch (t): "
        "0.783, 14.7750/s, 14.7750/s/gpu LR: 0.000265 Logit Scale: 14.260 Contrastive_loss: 1.6590 "
        "(1.7021) Loss: 1.6590 (1.7021)"
    )
    assert compare.rates(seen, 8) == {
        "intervals": 1,
        "median_samples_per_s_per_gpu": 10.2,
        "median_data_wait_share": 0.008,
    }


def test_rate_is_the_batch_over_the_window_average_after_epoch_0():
    # the last step of each window is slow (0.5 s: a shard boundary, say): open_clip's /s/gpu says
    # 1024 on every line, the windows' averages say otherwise
    windows = [0.200, 0.205, 0.210, 0.250, 0.190, 0.200]
    log = a_log(windows, batch_last=0.5, data_avg=0.010)
    found = compare.rates(log, 512)
    assert found["intervals"] == 12  # epochs 1 and 2 only
    # the median of 512/window: (512/0.200 + 512/0.205) / 2 = 2528.8, where /s/gpu would give 1024
    assert (
        found["median_samples_per_s_per_gpu"]
        == 2528.8
        == round(statistics.median(512 / b for b in windows), 1)
    )
    assert found["median_data_wait_share"] == round(
        statistics.median(0.010 / b for b in windows), 3
    )
    assert compare.rates("Start epoch 0\n" + log_line(0, 1, 47, 512, 0.1, 2.0, 2.0), 512) is None


def test_project_over_bare_from_two_logs():
    project = compare.rates(a_log([0.210], batch_last=0.3, data_avg=0.02), 512)
    bare = compare.rates(a_log([0.200], batch_last=0.2, data_avg=0.01), 512)
    assert (
        project["median_samples_per_s_per_gpu"] == 2438.1
        and bare["median_samples_per_s_per_gpu"] == 2560.0
    )
    assert compare.project_over_bare(project, bare) == round(2438.1 / 2560.0, 3) == 0.952
    assert compare.project_over_bare(None, bare) is None


def test_the_budget_is_shared_and_what_a_stage_leaves_goes_on():
    assert compare.share(420, "project", []) == 420 * 2 / 5 - compare.MARGIN
    assert compare.share(300, "bare", ["project"]) == 300 * 2 / 3 - compare.MARGIN
    assert compare.share(90, "evaluate", ["project", "bare"]) == 90 - compare.MARGIN
    assert compare.share(-5, "evaluate", ["project", "bare"]) == 0


def test_a_stage_past_its_share_is_stopped_with_its_children(tmp_path):
    """A stage's process and what it started (DataLoader workers, say) are stopped together."""
    marker = tmp_path / "child.pid"
    child = tmp_path / "child.py"
    child.write_text(
        f"import os, time\nopen({str(marker)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    )
    parent = tmp_path / "parent.py"
    parent.write_text(
        f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, {str(child)!r}])\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    found = compare.timed([sys.executable, str(parent)], tmp_path / "stage.log", tmp_path, 3)
    assert found["timed_out"] and found["timeout_s"] == 3 and found["rc"] != 0
    assert time.monotonic() - started < 3 + compare.GRACE
    pid = int(marker.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"the stage's child {pid} still runs")
