"""Training through open_clip_train: bitwise repeatable, resumable, never a silent no-op, pretrained
weights from a local file, launchers for GPUs and nodes."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time

import duckdb
import pytest
import torch

from tests.conftest import REPO
from tests.images import download, shard
from tests.test_subsets import rows_of, write_curated
from workflow_scripts import train
from workflow_scripts.common.config import load_config, train_launcher
from workflow_scripts.evaluate.benchmarks import subset_benchmark
from workflow_scripts.evaluate.zeroshot import classifier, encode_images, load_model, top_k

CONFIG = load_config(REPO / "config.yaml")
SETTINGS = CONFIG["train"]


@pytest.fixture
def shards(photo_server, tmp_path):
    """8 photos of two species in Train's train split, sharded as the pipeline does."""
    served, _, _ = photo_server
    rows = [{**r, "split": "train"} for r in rows_of("Aus alba", 4, "Aves", 1) + rows_of("Bus beta", 4, "Insecta", 5)]
    subset = write_curated(rows, tmp_path / "train.parquet")
    download(subset, tmp_path / "images", {"url_rewrite": {"from": "https://example.org", "to": served}})
    shard(subset, tmp_path / "images", tmp_path / "shards", {"samples_per_shard": 4})
    return tmp_path / "shards"


def tiny(**changes) -> dict:
    settings = copy.deepcopy(SETTINGS)
    settings["recipes"]["tiny-cpu"].update({"epochs": 2, "global_batch_size": 4, "warmup": 1, **changes})
    return settings


def test_tiny_recipe_twice_gives_the_same_checkpoint_bits(shards, tmp_path):
    first = train.train(shards, tmp_path / "a" / "tiny-cpu", "tiny-cpu", tiny(), threads=1)
    second = train.train(shards, tmp_path / "b" / "tiny-cpu", "tiny-cpu", tiny(), threads=1)
    assert first == second and first["samples_per_epoch"] == 8 and first["final_loss"] is not None
    weights = [torch.load(tmp_path / run / "tiny-cpu" / "checkpoint.pt", weights_only=False)["state_dict"]
               for run in ("a", "b")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not (tmp_path / "a" / "tiny-cpu.partial").exists()
    argv = json.loads((tmp_path / "a" / "tiny-cpu" / "argv.json").read_text())
    assert argv[argv.index("--resume") + 1] == "latest" and argv[argv.index("--precision") + 1] == "fp32"


def test_an_interrupted_run_with_other_settings_is_refused(shards, tmp_path):
    partial = tmp_path / "tiny-cpu.partial"
    partial.mkdir()
    (partial / "argv.json").write_text(json.dumps(["--epochs", "99"]))
    with pytest.raises(train.TrainError, match="remove it to start afresh"):
        train.train(shards, tmp_path / "tiny-cpu", "tiny-cpu", tiny(), threads=1)


def test_pretrained_weights_from_a_local_checkpoint(shards, tmp_path):
    train.train(shards, tmp_path / "base" / "tiny-cpu", "tiny-cpu", tiny(epochs=1), threads=1)
    checkpoint = tmp_path / "base" / "tiny-cpu" / "checkpoint.pt"
    train.train(shards, tmp_path / "tuned" / "tiny-cpu", "tiny-cpu", tiny(epochs=1, pretrained=str(checkpoint)),
                threads=1)
    log = (tmp_path / "tuned" / "tiny-cpu" / "train.log").read_text()
    assert f"Loading full pretrained weights from: {checkpoint}" in log and "initialized randomly" not in log


def test_too_few_shards_for_the_workers_is_an_error(shards, tmp_path):
    with pytest.raises(train.TrainError, match="2 shards for 3 workers"):
        train.train(shards, tmp_path / "tiny-cpu", "tiny-cpu", tiny(workers=3), threads=1)


def test_launchers():
    assert train_launcher(SETTINGS["recipes"]["tiny-cpu"]) == "python"
    for name in ("bt-clip-o", "bt-clip-b", "bt-clip-m"):  # the paper's recipes: 512 per GPU on one 8-GPU node
        recipe = SETTINGS["recipes"][name]
        assert recipe["global_batch_size"] // (recipe["gpu"] * recipe["nodes"]) == 512


@pytest.mark.parametrize("nodes, launcher, environment, rank", [
    (1, "torchrun --standalone --nproc_per_node=8", {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3"}, 3),
    (2, "srun --ntasks-per-node=8 --cpu-bind=v --accel-bind=gn python -u",
     {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1"}, 9)])
def test_eight_gpus_on_one_node_by_torchrun_and_on_two_by_srun(monkeypatch, nodes, launcher, environment, rank):
    """torchrun's and srun's rank variables give the rank and world size open_clip_train sees; the
    global batch is split over every GPU, 512 each when it grows with the nodes."""
    recipe = {**SETTINGS["recipes"]["bt-clip-o"], "nodes": nodes, "global_batch_size": 4096 * nodes}
    assert train_launcher(recipe) == launcher
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert (train.rank(), train.world_size()) == (rank, 8 * nodes)
    argv = train.open_clip_argv(recipe, 0, "x", 1, REPO, "n", train.world_size())
    assert argv[argv.index("--batch-size") + 1] == "512"
    halved = train.open_clip_argv({**recipe, "global_batch_size": 4096}, 0, "x", 1, REPO, "n", train.world_size())
    assert halved[halved.index("--batch-size") + 1] == str(4096 // (8 * nodes))


def test_global_batch_must_split_over_processes_and_processes_need_gpus():
    with pytest.raises(train.TrainError, match="multiple of gpus x nodes"):
        train.open_clip_argv({**SETTINGS["recipes"]["bt-clip-o"], "global_batch_size": 100}, 0, "x", 1, REPO, "n", 8)
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
        features = encode_images(network, preprocess, test.paths, test.locations, tmp_path / f"{name}.features")
        ids, _ = top_k(features, classifier(network, tokenizer, species))
        accuracy[name] = float((ids[:, 0] == test.labels).mean())
    assert len(test.keys) > 100 and accuracy["trained"] >= 5 * chance, (accuracy, chance)
    assert accuracy["random"] < 3 * chance, (accuracy, chance)


def caption_samples(count: int) -> list[dict]:
    return [{"__key__": str(i), **{f"{kind.lower()}.txt": f"{kind} {i}" for kind in SETTINGS["caption_types"]}}
            for i in range(count)]


def test_caption_type_per_batch_per_sample_seeded():
    """Every sample kept (the train split has its own shards) and shuffled, seeded."""
    per_batch = list(train.caption_stage(0, SETTINGS["caption_types"], "batch", 8)(bufsize=50, initial=10)(
        iter(caption_samples(64))))
    assert sorted(int(s["__key__"]) for s in per_batch) == list(range(64))
    kinds = [s["txt"].split()[0] for s in per_batch]
    batches = [set(kinds[i:i + 8]) for i in range(0, 64, 8)]
    assert all(len(b) == 1 for b in batches) and len(set().union(*batches)) > 1
    assert [s["__key__"] for s in per_batch] != sorted((s["__key__"] for s in per_batch), key=int)  # shuffled
    again = list(train.caption_stage(0, SETTINGS["caption_types"], "batch", 8)(bufsize=50, initial=10)(
        iter(caption_samples(64))))
    assert [(s["__key__"], s["txt"]) for s in again] == [(s["__key__"], s["txt"]) for s in per_batch]
    per_sample = list(train.caption_stage(0, SETTINGS["caption_types"], "sample", 8)(bufsize=50, initial=10)(
        iter(caption_samples(64))))
    assert len({s["txt"].split()[0] for s in per_sample[:8]}) > 1


def test_open_clip_loader_with_the_caption_stage_keeps_every_image_format(tmp_path):
    """open_clip_train's own loader drops images that are not jpg/jpeg/png/webp; the shards keep GIFs
    as they are (iNaturalist has them), and the caption stage passes them on."""
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
            writer.write({"__key__": str(key), kind: image({"jpg": "JPEG"}.get(kind, kind.upper()), 40 * key),
                          **{k: v.encode() for k, v in caption_samples(key + 1)[key].items() if k != "__key__"}})
    args = parse_args(["--train-data", str(tar), "--dataset-type", "webdataset", "--train-num-samples", "6",
                       "--batch-size", "1", "--workers", "0"])
    args.world_size, args.rank = 1, 0
    original = open_clip_train.data.wds.shuffle
    open_clip_train.data.wds.shuffle = train.caption_stage(0, SETTINGS["caption_types"], "batch", 1)
    try:
        data = open_clip_train.data.get_wds_dataset(args, open_clip.image_transform(16, is_train=False),
                                                    is_train=True, tokenizer=open_clip.get_tokenizer("ViT-B-16"))
        shades = {round(float(images[0, 0, 0, 0]), 1) for images, _ in data.dataloader}  # an epoch: 6 batches
    finally:
        open_clip_train.data.wds.shuffle = original
    assert len(shades) == 6  # without the GIFs: 4 images, repeated to fill the epoch


def test_a_killed_run_resumes_from_its_last_whole_checkpoint(shards, tmp_path):
    settings = tiny(epochs=40)
    command = [sys.executable, "-m", "workflow_scripts.train", "--shards", str(shards), "--out",
               str(tmp_path / "tiny-cpu"), "--recipe", "tiny-cpu", "--settings", json.dumps(settings), "--threads", "1"]
    partial = tmp_path / "tiny-cpu.partial"
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = partial / "out.log"
    while run.poll() is None and not (log.exists() and "Train Epoch: 2 [" in log.read_text()):
        time.sleep(0.05)  # epoch 1's checkpoint is whole once epoch 2 trains
    run.kill()
    run.wait()
    assert not (tmp_path / "tiny-cpu").exists()
    (partial / "checkpoints" / "epoch_39.pt").write_bytes(b"PK\x03\x04 cut short by a kill")  # a save cut short
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0 and "removed unreadable checkpoints of an interrupted run: epoch_39.pt" in \
        resumed.stderr
    log = (tmp_path / "tiny-cpu" / "train.log").read_text()
    assert re.search(r"Found latest resume checkpoint at .*epoch_[12]\.pt", log)
    assert json.loads((tmp_path / "tiny-cpu" / "metrics.json").read_text())["epochs"] == 40
