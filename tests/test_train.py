"""Training through open_clip_train: bitwise repeatable, resumable, never a silent no-op, pretrained
weights from a local file, launchers for GPUs and nodes."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from unittest import mock

import duckdb
import pytest
import torch

from tests.conftest import REPO, served_photos
from tests.images import download, shard
from tests.test_subsets import rows_of, write_curated
from workflow_scripts import train
from workflow_scripts.common.benchmarks import subset_benchmark
from workflow_scripts.common.config import (
    MASTER_PORTS,
    load_config,
    slurm_rendezvous,
    train_launcher,
)
from workflow_scripts.evaluate.zeroshot import classifier, encode_images, load_model, top_k

CONFIG = load_config(REPO / "config.yaml")
SETTINGS = CONFIG["train"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """8 photos of two species in Train's train split, sharded as the pipeline does: once for the
    tests here, which only read them."""
    folder = tmp_path_factory.mktemp("shards")
    rows = [
        {**r, "split": "train"}
        for r in rows_of("Aus alba", 4, "Aves", 1) + rows_of("Bus beta", 4, "Insecta", 5)
    ]
    subset = write_curated(rows, folder / "train.parquet")
    with served_photos(folder) as (served, _, _):
        rewrite = {"url_rewrite": {"from": "https://example.org", "to": served}}
        download(subset, folder / "images", rewrite)
    shard(subset, folder / "images", folder / "shards", {"samples_per_shard": 4})
    return folder / "shards"


def tiny(**changes) -> dict:
    settings = copy.deepcopy(SETTINGS)
    settings["recipes"]["tiny-cpu"].update(
        {"epochs": 2, "global_batch_size": 4, "warmup": 1, **changes}
    )
    return settings


@pytest.mark.slow
def test_tiny_recipe_twice_gives_the_same_checkpoint_bits(shards, tmp_path):
    first = train.train(shards, tmp_path / "a" / "tiny-cpu", "tiny-cpu", tiny(), threads=1)
    second = train.train(shards, tmp_path / "b" / "tiny-cpu", "tiny-cpu", tiny(), threads=1)
    assert first == second and first["samples_per_epoch"] == 8 and first["final_loss"] is not None
    weights = [
        torch.load(tmp_path / run / "tiny-cpu" / "checkpoint.pt", weights_only=False)["state_dict"]
        for run in ("a", "b")
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not (tmp_path / "a" / "tiny-cpu.partial").exists()
    argv = json.loads((tmp_path / "a" / "tiny-cpu" / "argv.json").read_text())
    assert (
        argv[argv.index("--resume") + 1] == "latest"
        and argv[argv.index("--precision") + 1] == "fp32"
    )


@pytest.mark.slow
def test_an_interrupted_run_with_other_settings_is_refused(shards, tmp_path):
    partial = tmp_path / "tiny-cpu.partial"
    partial.mkdir()
    (partial / "argv.json").write_text(json.dumps(["--epochs", "99"]))
    with pytest.raises(train.TrainError, match="remove it to start afresh"):
        train.train(shards, tmp_path / "tiny-cpu", "tiny-cpu", tiny(), threads=1)


@pytest.mark.slow
def test_pretrained_weights_from_a_local_checkpoint(shards, tmp_path):
    train.train(shards, tmp_path / "base" / "tiny-cpu", "tiny-cpu", tiny(epochs=1), threads=1)
    checkpoint = tmp_path / "base" / "tiny-cpu" / "checkpoint.pt"
    train.train(
        shards,
        tmp_path / "tuned" / "tiny-cpu",
        "tiny-cpu",
        tiny(epochs=1, pretrained=str(checkpoint)),
        threads=1,
    )
    log = (tmp_path / "tuned" / "tiny-cpu" / "train.log").read_text()
    assert (
        f"Loading full pretrained weights from: {checkpoint}" in log
        and "initialized randomly" not in log
    )


@pytest.mark.slow
def test_too_few_shards_for_the_workers_is_an_error(shards, tmp_path):
    with pytest.raises(train.TrainError, match="2 shards for 3 workers"):
        train.train(shards, tmp_path / "tiny-cpu", "tiny-cpu", tiny(workers=3), threads=1)


def test_launchers():
    assert train_launcher(SETTINGS["recipes"]["tiny-cpu"]) == "python"
    for name in (
        "bt-clip-o",
        "bt-clip-b",
        "bt-clip-m",
    ):  # the paper's recipes: 512 per GPU on one 8-GPU node
        recipe = SETTINGS["recipes"][name]
        assert recipe["global_batch_size"] // (recipe["gpu"] * recipe["nodes"]) == 512


# every variable open_clip_train's world_info_from_env() reads a rank or size from
RANK_VARIABLES = (
    "LOCAL_RANK",
    "MPI_LOCALRANKID",
    "SLURM_LOCALID",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "RANK",
    "PMI_RANK",
    "SLURM_PROCID",
    "OMPI_COMM_WORLD_RANK",
    "WORLD_SIZE",
    "PMI_SIZE",
    "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE",
)


@pytest.mark.parametrize(
    "nodes, launcher, environment, rank, local_rank",
    [
        (
            1,
            "torchrun --standalone --nproc_per_node=8",
            {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"},
            3,
            3,
        ),
        (
            2,
            f"{slurm_rendezvous()} srun --ntasks-per-node=8 --cpu-bind=v --accel-bind=gn python -u",
            {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"},
            9,
            1,
        ),
    ],
)
def test_eight_gpus_on_one_node_by_torchrun_and_on_two_by_srun(
    monkeypatch, nodes, launcher, environment, rank, local_rank
):
    """torchrun's and srun's rank variables give the rank and world size open_clip_train sees; the
    global batch is split over every GPU, 512 each when it grows with the nodes."""
    from open_clip_train.distributed import world_info_from_env

    recipe = {**SETTINGS["recipes"]["bt-clip-o"], "nodes": nodes, "global_batch_size": 4096 * nodes}
    assert train_launcher(recipe) == launcher
    for name in RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert (train.rank(), train.world_size()) == (rank, 8 * nodes)
    assert world_info_from_env() == (local_rank, rank, 8 * nodes)
    argv = train.open_clip_argv(recipe, 0, "x", 1, REPO, "n", train.world_size())
    assert argv[argv.index("--batch-size") + 1] == "512"
    halved = train.open_clip_argv(
        {**recipe, "global_batch_size": 4096}, 0, "x", 1, REPO, "n", train.world_size()
    )
    assert halved[halved.index("--batch-size") + 1] == str(4096 // (8 * nodes))


FAKE_SCONTROL = """#!{python}
# `scontrol show hostnames LIST`, LIST comma-separated here (no ranges): one host a line
import sys
assert sys.argv[1:3] == ["show", "hostnames"], sys.argv
print("\\n".join(sys.argv[3].split(",")))
"""
FAKE_SRUN = """#!{python}
# srun in an allocation of SLURM_NNODES nodes: --ntasks-per-node tasks on each, all at once, each
# with SLURM's task variables and the caller's environment (srun's default --export=ALL)
import os, subprocess, sys
args, per_node = sys.argv[1:], 1
while args[0].startswith("--"):
    option = args.pop(0)
    if option.startswith("--ntasks-per-node="):
        per_node = int(option.split("=", 1)[1])
tasks = int(os.environ["SLURM_NNODES"]) * per_node
running = [subprocess.Popen(args, env={{**os.environ, "SLURM_PROCID": str(rank),
                                        "SLURM_NTASKS": str(tasks),
                                        "SLURM_LOCALID": str(rank % per_node),
                                        "SLURM_NODEID": str(rank // per_node)}})
           for rank in range(tasks)]
sys.exit(max(process.wait() for process in running))
"""


def slurm_allocation(tmp_path, nodes: int, job_id: int, nodelist: str) -> dict:
    """The environment of a job step's shell in a SLURM allocation (no rank variables yet), with
    fake scontrol and srun first on PATH."""
    tools = tmp_path / "bin"
    tools.mkdir(exist_ok=True)
    for name, text in (("scontrol", FAKE_SCONTROL), ("srun", FAKE_SRUN)):
        (tools / name).write_text(text.format(python=sys.executable))
        (tools / name).chmod(0o755)
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in RANK_VARIABLES and not name.startswith(("SLURM_", "MASTER_"))
    }
    return {
        **env,
        "PATH": f"{tools}:{os.path.dirname(sys.executable)}:{env['PATH']}",
        "SLURM_JOB_ID": str(job_id),
        "SLURM_JOB_NODELIST": nodelist,
        "SLURM_NNODES": str(nodes),
    }


def launch(launcher: str, code: str, env: dict) -> subprocess.CompletedProcess:
    """`<launcher> -c <code>` as the train rule's shell runs `<launcher> -m workflow_scripts.train`
    (Snakemake's bash strict mode)."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", f"OMP_NUM_THREADS=1 {launcher} -c {shlex.quote(code)}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_two_nodes_by_srun_every_task_sees_its_rank_and_rank_0s_address(tmp_path):
    """2 nodes x 8 GPUs: each of the 16 tasks srun starts gets its rank, local rank and the world
    size as open_clip_train reads them, and the same MASTER_ADDR (the allocation's first host) and
    MASTER_PORT (from the job id) that its env:// rendezvous needs."""
    from open_clip_train.distributed import world_info_from_env

    launcher = train_launcher({**SETTINGS["recipes"]["bt-clip-o"], "nodes": 2})
    env = slurm_allocation(tmp_path, 2, 1234567, "gpu-a,gpu-b")
    dumps = tmp_path / "env"
    dumps.mkdir()
    code = (
        f"import json, os; json.dump(dict(os.environ), open({str(dumps)!r} + '/' + "
        f"os.environ['SLURM_PROCID'], 'w'))"
    )
    done = launch(launcher, code, env)
    assert done.returncode == 0, done.stderr
    seen = {}
    for dump in sorted(dumps.iterdir()):
        with mock.patch.dict(os.environ, json.loads(dump.read_text()), clear=True):
            seen[int(dump.name)] = (
                world_info_from_env(),
                train.rank(),
                train.world_size(),
                os.environ["MASTER_ADDR"],
                os.environ["MASTER_PORT"],
            )
    base, span = MASTER_PORTS
    assert seen == {
        rank: ((rank % 8, rank, 16), rank, 16, "gpu-a", str(base + 1234567 % span))
        for rank in range(16)
    }


def free_job_id() -> int:
    """A job id whose rendezvous port (MASTER_PORTS) is free here."""
    base, span = MASTER_PORTS
    for offset in range(span):
        job = (os.getpid() + offset) % span
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", base + job))
            except OSError:
                continue
            return job
    raise RuntimeError("no free port")


@pytest.mark.slow
def test_two_nodes_by_srun_join_one_process_group(tmp_path):
    """The tasks srun starts join one process group as open_clip_train does (env://, from SLURM's
    variables: here gloo on CPU, one task on each of 2 "nodes" on this machine) and all-reduce;
    without the rendezvous variables they cannot start (issue 18)."""
    code = (
        "import json, sys, torch, torch.distributed as dist\n"
        "from open_clip_train.distributed import init_distributed_device_so\n"
        "found = init_distributed_device_so(device='cpu')\n"
        "total = torch.tensor([found['global_rank'] + 1.0])\n"
        "dist.all_reduce(total)\n"
        # one write: tasks share a pipe
        "sys.stdout.write(json.dumps({**found, 'sum': total.item()}) + '\\n')\n"
        "dist.destroy_process_group()\n"
    )
    recipe = {**SETTINGS["recipes"]["tiny-cpu"], "nodes": 2, "gpu": 1}
    env = slurm_allocation(tmp_path, 2, free_job_id(), "127.0.0.1,127.0.0.1")
    done = launch(train_launcher(recipe), code, env)
    assert done.returncode == 0, done.stderr
    tasks = sorted(
        (json.loads(line) for line in done.stdout.splitlines()),
        key=lambda task: task["global_rank"],
    )
    assert tasks == [
        {
            "device": "cpu",
            "global_rank": rank,
            "local_rank": 0,
            "world_size": 2,
            "distributed": True,
            "sum": 3.0,
        }
        for rank in (0, 1)
    ]
    bare = launch(train_launcher(recipe).removeprefix(f"{slurm_rendezvous()} "), code, env)
    assert bare.returncode != 0 and "MASTER_ADDR expected" in bare.stderr


def test_global_batch_must_split_over_processes_and_processes_need_gpus():
    with pytest.raises(train.TrainError, match="multiple of gpus x nodes"):
        train.open_clip_argv(
            {**SETTINGS["recipes"]["bt-clip-o"], "global_batch_size": 100}, 0, "x", 1, REPO, "n", 8
        )
    with pytest.raises(train.TrainError, match="DDP wraps the model for GPUs only"):
        train.open_clip_argv(SETTINGS["recipes"]["tiny-cpu"], 0, "x", 1, REPO, "n", 2)


def test_demo_recipe_learns_the_sample_and_random_init_does_not(demo_model, tmp_path):
    """The demo's path on the sample's newer month (curate, subsets, download from the mirror,
    shards, tiny-cpu as configured); zero-shot on Train's test split against all Train species."""
    snapshot, checkpoint = demo_model
    table = snapshot / "subsets" / "train.parquet"
    species = sorted(r[0] for r in duckdb.sql(f"SELECT DISTINCT species FROM '{table}'").fetchall())
    test = subset_benchmark(snapshot / "shards" / "train", table, "train")
    assert test.class_keys == species  # every Train species, from the table
    chance = 1 / len(species)
    accuracy = {}
    for name, weights in (("trained", str(checkpoint)), ("random", None)):
        network, preprocess, tokenizer = load_model("biotrove-tiny", weights)
        features = encode_images(
            network, preprocess, test.paths, test.locations, tmp_path / f"{name}.features"
        )
        ids, _ = top_k(features, classifier(network, tokenizer, species))
        accuracy[name] = float((ids[:, 0] == test.labels).mean())
    assert len(test.keys) > 100 and accuracy["trained"] >= 5 * chance, (accuracy, chance)
    assert accuracy["random"] < 3 * chance, (accuracy, chance)


def caption_samples(count: int) -> list[dict]:
    return [
        {
            "__key__": str(i),
            **{f"{kind.lower()}.txt": f"{kind} {i}" for kind in SETTINGS["caption_types"]},
        }
        for i in range(count)
    ]


def test_caption_type_per_batch_per_sample_seeded():
    """Every sample kept (the train split has its own shards) and shuffled, seeded."""
    per_batch = list(
        train.caption_stage(0, SETTINGS["caption_types"], "batch", 8)(bufsize=50, initial=10)(
            iter(caption_samples(64))
        )
    )
    assert sorted(int(s["__key__"]) for s in per_batch) == list(range(64))
    kinds = [s["txt"].split()[0] for s in per_batch]
    batches = [set(kinds[i : i + 8]) for i in range(0, 64, 8)]
    assert all(len(b) == 1 for b in batches) and len(set().union(*batches)) > 1
    assert [s["__key__"] for s in per_batch] != sorted(
        (s["__key__"] for s in per_batch), key=int
    )  # shuffled
    again = list(
        train.caption_stage(0, SETTINGS["caption_types"], "batch", 8)(bufsize=50, initial=10)(
            iter(caption_samples(64))
        )
    )
    assert [(s["__key__"], s["txt"]) for s in again] == [
        (s["__key__"], s["txt"]) for s in per_batch
    ]
    per_sample = list(
        train.caption_stage(0, SETTINGS["caption_types"], "sample", 8)(bufsize=50, initial=10)(
            iter(caption_samples(64))
        )
    )
    assert len({s["txt"].split()[0] for s in per_sample[:8]}) > 1


def test_open_clip_loader_with_the_caption_stage_keeps_every_image_format(tmp_path):
    """open_clip_train's own loader drops images that are not jpg/jpeg/png/webp; the shards keep
    GIFs as they are (iNaturalist has them), and the caption stage passes them on."""
    import io

    import open_clip
    import open_clip_train.data
    import webdataset as wds
    from open_clip_train.params import parse_args
    from PIL import Image

    def image(kind: str, shade: int) -> bytes:
        out = io.BytesIO()
        Image.new("RGB", (32, 24), (shade, 40, 40)).save(out, kind)
        return out.getvalue()

    tar = tmp_path / "shard-000000.tar"
    with wds.TarWriter(str(tar), encoder=False) as writer:
        for key, kind in enumerate(("jpg", "png", "gif", "gif", "jpg", "png")):
            writer.write(
                {
                    "__key__": str(key),
                    kind: image({"jpg": "JPEG"}.get(kind, kind.upper()), 40 * key),
                    **{
                        k: v.encode()
                        for k, v in caption_samples(key + 1)[key].items()
                        if k != "__key__"
                    },
                }
            )
    args = parse_args(
        [
            "--train-data",
            str(tar),
            "--dataset-type",
            "webdataset",
            "--train-num-samples",
            "6",
            "--batch-size",
            "1",
            "--workers",
            "0",
        ]
    )
    args.world_size, args.rank = 1, 0
    shuffle = open_clip_train.data.wds.shuffle
    with train.captioned_shuffle(0, SETTINGS["caption_types"], "batch", 1):
        data = open_clip_train.data.get_wds_dataset(
            args,
            open_clip.image_transform(16, is_train=False),
            is_train=True,
            tokenizer=open_clip.get_tokenizer("ViT-B-16"),
        )
        shades = {
            round(float(images[0, 0, 0, 0]), 1) for images, _ in data.dataloader
        }  # an epoch: 6 batches
    assert len(shades) == 6  # without the GIFs: 4 images, repeated to fill the epoch
    assert open_clip_train.data.wds.shuffle is shuffle  # restored


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_whole_checkpoint(shards, tmp_path):
    settings = tiny(epochs=40)
    command = [
        sys.executable,
        "-m",
        "workflow_scripts.train",
        "--shards",
        str(shards),
        "--out",
        str(tmp_path / "tiny-cpu"),
        "--recipe",
        "tiny-cpu",
        "--settings",
        json.dumps(settings),
        "--threads",
        "1",
    ]
    partial = tmp_path / "tiny-cpu.partial"
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = partial / "out.log"
    while run.poll() is None and not (log.exists() and "Train Epoch: 2 [" in log.read_text()):
        time.sleep(0.05)  # epoch 1's checkpoint is whole once epoch 2 trains
    run.kill()
    run.wait()
    assert not (tmp_path / "tiny-cpu").exists()
    (partial / "checkpoints" / "epoch_39.pt").write_bytes(
        b"PK\x03\x04 cut short by a kill"
    )  # a save cut short
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert (
        resumed.returncode == 0
        and "removed unreadable checkpoints of an interrupted run: epoch_39.pt" in resumed.stderr
    )
    log = (tmp_path / "tiny-cpu" / "train.log").read_text()
    assert re.search(r"Found latest resume checkpoint at .*epoch_[12]\.pt", log)
    assert json.loads((tmp_path / "tiny-cpu" / "metrics.json").read_text())["epochs"] == 40
