"""Zero-shot evaluation: metrics on a hand case; every benchmark evaluated with levels and conformal
sets, same bytes on rerun; the external-benchmark adapter on generated folders and tars."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from tests.images import snapshot_of
from tests.test_subsets import rows_of
from workflow_scripts.common import contracts
from workflow_scripts.common.benchmarks import (
    NAME_MODES,
    BenchmarkError,
    class_name,
    external_benchmark,
)
from workflow_scripts.common.taxonomy import RANKS
from workflow_scripts.evaluate import __main__ as evaluate_cli
from workflow_scripts.evaluate import stage as evaluate


def test_benchmark_metrics_by_hand():
    ranked = np.array([[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 1, 0, 3, 4], [1, 2, 0, 3, 4]])
    metrics = evaluate.benchmark_metrics(ranked, np.array([0, 0, 0, 1]), 5)
    assert (metrics["top1"], metrics["top5"], metrics["macro_top1"]) == (
        0.5,
        1.0,
        pytest.approx((1 / 3 + 1) / 2, abs=1e-6),
    )
    assert metrics["top1_ci95"] == [0.150039, 0.849961] and (
        metrics["images"],
        metrics["classes"],
    ) == (4, 5)
    assert (metrics["top1_hits"], metrics["top5_hits"]) == (2, 4)


def test_class_names_per_level_and_name_mode():
    row = rows_of("Aus alba", 1, "Aves", 1)[0]
    names = {mode: class_name(row, "species", mode) for mode in NAME_MODES}
    assert names == {
        "scientific": "Aus alba",
        "common": "common Aus alba",
        "taxonomic": "Animalia Chordata Aves OAves FAus Aus alba",
        "scientific_common": "Aus alba with common name common Aus alba",
    }
    assert {
        class_name(row, "family", mode) for mode in ("scientific", "common", "scientific_common")
    } == {"FAus"}
    assert class_name(row, "family", "taxonomic") == "Animalia Chordata Aves OAves FAus"


def test_class_weights_most_specific_name_wins():
    rows = (
        rows_of("Aus alba", 1, "Aves", 1)
        + rows_of("Bus beta", 1, "Insecta", 2)
        + rows_of("Cus gamma", 1, "Aves", 3)
    )
    weights = evaluate.class_weights(rows, {"Aves": 2.0, "Cus gamma": 5.0})
    assert list(weights) == pytest.approx([2 / 8, 1 / 8, 5 / 8])


def subset_files(snapshot: Path, subsets=contracts.SUBSETS) -> dict[str, tuple[Path, Path]]:
    """Subsets' shards folders and tables in a snapshot folder, as evaluate() takes them."""
    return {
        subset: (
            Path(contracts.shards(str(snapshot), subset)),
            Path(contracts.subset_table(str(snapshot), subset)),
        )
        for subset in subsets
    }


def test_subsets_files_are_matched_by_name_whatever_their_order():
    shards = ["s/shards/unseen", "s/shards/train/"]
    tables = ["s/subsets/train.parquet", "s/subsets/unseen.parquet", "s/subsets/train.parquet"]
    assert contracts.subset_inputs(shards, tables) == {
        "train": ("s/shards/train/", "s/subsets/train.parquet"),
        "unseen": ("s/shards/unseen", "s/subsets/unseen.parquet"),
    }
    with pytest.raises(
        ValueError, match="shards of unseen but tables of train, unseen: each subset needs both"
    ):
        contracts.subset_inputs(shards[:1], tables)
    with pytest.raises(ValueError, match=r"s/subsets/train.parquet: not a subset's shards folder"):
        contracts.subset_inputs(tables, tables)
    with pytest.raises(ValueError, match=r"s/other.parquet: not a subset's table"):
        contracts.by_subset(["s/other.parquet"])
    with pytest.raises(
        ValueError, match="two tables of train: a/train.parquet and b/train.parquet"
    ):
        contracts.by_subset(["a/train.parquet", "b/train.parquet"])


def test_the_cli_names_a_benchmark_without_its_files(tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate_cli.main(
            [
                "--shards",
                str(tmp_path / "shards" / "balanced"),
                "--tables",
                str(tmp_path / "balanced.parquet"),
                "--model",
                "biotrove-tiny",
                "--out",
                str(tmp_path / "o"),
                "--settings",
                json.dumps({"benchmarks": ["balanced", "unseen"]}),
            ]
        )
    assert "none given of the benchmarks unseen" in capsys.readouterr().err
    with pytest.raises(
        BenchmarkError, match=r"benchmark unseen: its shards and table were not given"
    ):
        evaluate.evaluate(
            subset_files(tmp_path, ["balanced"]),
            "biotrove-tiny",
            None,
            tmp_path / "o",
            {"benchmarks": ["balanced", "unseen"]},
        )
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """A snapshot folder with the shards of five tiny subsets, downloaded from a local photo
    server."""
    folder = tmp_path_factory.mktemp("evaluate")
    rows = {
        "train": [
            {**r, "split": "test" if r["photo_id"] % 2 else "train"}
            for r in rows_of("Aus alba", 4, "Aves", 1) + rows_of("Bus beta", 4, "Insecta", 11)
        ],
        "balanced": rows_of("Aus alba", 3, "Aves", 21) + rows_of("Bus beta", 3, "Insecta", 31),
        "unseen": rows_of("Cus gamma", 2, "Insecta", 41),
        "lifestages": [
            {**r, "label": "common Dus delta larva"} for r in rows_of("Dus delta", 2, "Insecta", 51)
        ],
        "genus_sampled": [
            {**r, "split": "test" if r["photo_id"] % 2 else "train"}
            for r in rows_of("Eus eps", 2, "Insecta", 61) + rows_of("Eus zeta", 2, "Insecta", 71)
        ],
    }
    snapshot_of(folder, rows, lambda row: picture(row["photo_id"] * 4, "JPEG"))
    return folder


SETTINGS = {
    "conformal": {"calibration_fraction": 0.5},
    "batch_size": 3,
    "benchmarks": list(contracts.SUBSETS),
}


@pytest.fixture(scope="module")
def evaluated(snapshot, tmp_path_factory) -> tuple[dict, Path]:
    """Every benchmark of the snapshot evaluated with two DataLoader workers: the summary returned,
    and the output folder."""
    out = tmp_path_factory.mktemp("evaluated") / "a"
    first = evaluate.evaluate(
        subset_files(snapshot), "biotrove-tiny", None, out, {**SETTINGS, "workers": 2}
    )
    return first, out


@pytest.mark.slow
def test_every_benchmark_is_scored_on_its_own_test_images(evaluated):
    """Train's and genus_sampled's test splits read from their own shard sets, their classes from
    the tables."""
    first, out = evaluated
    scored = first["benchmarks"]
    assert {name: scored[name]["images"] for name in scored} == {
        "train": 4,
        "balanced": 6,
        "unseen": 2,
        "lifestages": 2,
        "genus_sampled": 2,
    }
    assert (
        scored["train"]["classes"] == scored["genus_sampled"]["classes"] == 2
    )  # all species, not the test split's
    predictions = duckdb.sql(
        f"SELECT photo_id, len(top_ids) FROM '{out}/train.predictions.parquet'"
    ).fetchall()
    assert predictions == [(1, 2), (3, 2), (11, 2), (13, 2)]


@pytest.mark.slow
def test_every_level_and_name_mode_is_scored(evaluated):
    first, out = evaluated
    assert [(r["level"], r["name_mode"]) for r in first["levels"]] == [
        (level, mode) for level in RANKS for mode in NAME_MODES
    ]
    assert (
        next(r for r in first["levels"] if r["level"] == "kingdom")["classes"] == 1
    )  # Animalia only
    levels = duckdb.sql(f"SELECT count(*) FROM '{out}/balanced.levels.parquet'").fetchone()[0]
    assert levels == 6 * len(RANKS) * len(NAME_MODES)


@pytest.mark.slow
def test_conformal_sets_split_each_benchmark(evaluated):
    first, _ = evaluated
    scored = first["benchmarks"]
    calibrated = {(r["benchmark"], r["method"]) for r in first["conformal"]}
    assert ("balanced", "pas") in calibrated and all(
        r["calibration_images"] + r["test_images"] == scored[r["benchmark"]]["images"]
        for r in first["conformal"]
    )


@pytest.mark.slow
def test_metrics_json_is_the_summary(evaluated):
    first, out = evaluated
    assert json.loads((out / "metrics.json").read_text()) == first


@pytest.mark.slow
def test_a_rerun_as_the_rule_runs_it_gives_the_same_bytes(evaluated, snapshot, tmp_path):
    """The images decoded in the main process instead of two DataLoader workers, each subset's
    shards folder and table passed in another order."""
    _, out = evaluated
    files = subset_files(snapshot)
    assert (
        evaluate_cli.main(
            [
                "--shards",
                *(str(shards) for shards, _ in files.values()),
                "--tables",
                *(str(table) for _, table in reversed(files.values())),
                "--model",
                "biotrove-tiny",
                "--out",
                str(tmp_path / "b"),
                "--settings",
                json.dumps({**SETTINGS, "workers": 0}),
            ]
        )
        == 0
    )
    digests = [
        {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.iterdir())}
        for run in (out, tmp_path / "b")
    ]
    assert digests[0] == digests[1]


def picture(colour: int, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), (colour, 255 - colour, 60)).save(out, format=kind)
    return out.getvalue()


def write_metadata(path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filepath", "species"])
        writer.writerows(rows)


def folder_benchmark(tmp_path, labelled: list[tuple[str, str]]) -> dict:
    for number, (name, _) in enumerate(labelled):
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "images" / name).write_bytes(picture(number * 40))
    write_metadata(tmp_path / "metadata.csv", labelled)
    return {
        "format": "folder",
        "images": str(tmp_path / "images"),
        "metadata": str(tmp_path / "metadata.csv"),
        "key_column": "filepath",
        "label_column": "species",
        "name_mode": "common",
    }


@pytest.mark.slow
def test_external_folder_benchmark_evaluated_beside_ours(snapshot, tmp_path):
    labelled = [
        ("b/2.png", "blue jay"),
        ("a/1.png", "robin"),
        ("a/3.png", "robin"),
        ("b/4.png", "blue jay"),
    ]
    spec = folder_benchmark(tmp_path, labelled)
    results = evaluate.evaluate(
        subset_files(snapshot),
        "biotrove-tiny",
        None,
        tmp_path / "out",
        {"benchmarks": ["unseen"], "external": {"birds": spec}, "levels_benchmark": "unseen"},
    )
    assert (
        results["benchmarks"]["birds"] | {"images": 4, "classes": 2, "name_mode": "common"}
        == results["benchmarks"]["birds"]
    )
    rows = duckdb.sql(
        f"SELECT photo_id, label FROM '{tmp_path}/out/birds.predictions.parquet'"
    ).fetchall()
    assert rows == [
        ("a/1.png", 1),
        ("a/3.png", 1),
        ("b/2.png", 0),
        ("b/4.png", 0),
    ]  # classes sorted: blue jay, robin


def test_external_webdataset_benchmark_counts_samples_without_metadata(tmp_path):
    (tmp_path / "tars").mkdir()
    with tarfile.open(tmp_path / "tars" / "000000.tar", "w") as tar:
        for key, colour in (("x1", 10), ("x2", 90), ("stray", 200)):
            data = picture(colour)
            info = tarfile.TarInfo(f"{key}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    write_metadata(tmp_path / "meta.csv", [("x2", "weed"), ("x1", "grass")])
    benchmark = external_benchmark(
        {
            "format": "webdataset",
            "images": str(tmp_path / "tars"),
            "metadata": str(tmp_path / "meta.csv"),
            "key_column": "filepath",
            "label_column": "species",
            "name_mode": "common",
        }
    )
    assert benchmark.keys == ["x1", "x2"] and benchmark.skipped == {"without_metadata": 1}
    assert list(benchmark.labels) == [0, 1] and benchmark.class_keys == ["grass", "weed"]


def test_external_benchmark_errors_name_the_file_and_line(tmp_path):
    spec = folder_benchmark(tmp_path, [("a.png", "robin"), ("b.png", "wren")])
    write_metadata(
        tmp_path / "metadata.csv", [("a.png", "robin"), ("b.png", "wren"), ("gone.png", "wren")]
    )
    with pytest.raises(FileNotFoundError, match=r"metadata.csv:4: no image .*gone.png"):
        external_benchmark(spec)
    write_metadata(tmp_path / "metadata.csv", [("a.png", "robin"), ("a.png", "wren")])
    with pytest.raises(ValueError, match=r"metadata.csv:3: 'a.png' repeats line 2"):
        external_benchmark(spec)
    with pytest.raises(ValueError, match=r"no column 'label'"):
        external_benchmark({**spec, "label_column": "label"})


def test_half_precision_on_the_cpu_names_the_setting_and_the_way_out():
    import torch

    from workflow_scripts.evaluate.zeroshot import autocast

    on_cpu = torch.nn.Linear(2, 2)
    for precision in ("bf16", "fp16"):
        with pytest.raises(
            evaluate.EvaluateError,
            match=rf"config evaluate\.precision {precision} runs on CUDA only, "
            r"and the model is on cpu: set evaluate\.precision: fp32 "
            r".*or evaluate\.device: cuda",
        ):
            autocast(on_cpu, precision)
    with autocast(on_cpu, "fp32"):
        assert on_cpu(torch.ones(1, 2)).dtype == torch.float32


@pytest.mark.slow
def test_a_batch_of_classes_met_again_is_not_encoded_again_and_weighs_the_same():
    """Table 8's name modes repeat whole batches of class names: the classifier reuses their
    columns, and its weights are open_clip's own, bit for bit."""
    import open_clip
    import torch

    from workflow_scripts.evaluate.zeroshot import (
        CLASSES_PER_BATCH,
        TEMPLATES,
        classifier,
        load_model,
    )

    network, _, tokenizer = load_model("biotrove-tiny", None)
    names = [f"Genus species{n}" for n in range(CLASSES_PER_BATCH + 7)]
    encoded = {}
    for twice in (names, names[:CLASSES_PER_BATCH] + ["Other name"]):
        ours = classifier(network, tokenizer, twice, encoded=encoded)
        theirs = open_clip.build_zero_shot_classifier(
            network, tokenizer, twice, TEMPLATES, num_classes_per_batch=CLASSES_PER_BATCH
        )
        assert torch.equal(ours, theirs.float())
    assert len(encoded) == 3  # the first batch once, both last ones


@pytest.mark.slow
def test_a_local_checkpoint_is_what_gets_evaluated(snapshot, tmp_path):
    """A pretrained model given as a checkpoint file (open_clip_train's layout, as ours and others'
    training writes it) is loaded, not the random-init control."""
    import open_clip
    import torch

    from workflow_scripts.common.models import register_model_configs
    from workflow_scripts.evaluate.zeroshot import load_model

    register_model_configs()
    torch.manual_seed(1)  # not the control's seed
    saved = open_clip.create_model("biotrove-tiny").state_dict()
    torch.save(
        {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in saved.items()}},
        tmp_path / "local.pt",
    )
    loaded = load_model("biotrove-tiny", str(tmp_path / "local.pt"))[0].state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)
    scores = {}
    for name, pretrained in (("local", str(tmp_path / "local.pt")), ("control", None)):
        evaluate.evaluate(
            subset_files(snapshot, ["balanced"]),
            "biotrove-tiny",
            pretrained,
            tmp_path / name,
            {"benchmarks": ["balanced"]},
        )
        scores[name] = duckdb.sql(
            f"SELECT top_scores FROM '{tmp_path / name}/balanced.predictions.parquet'"
        ).fetchall()
    assert scores["local"] != scores["control"]


@pytest.mark.slow
def test_an_empty_subset_is_named_not_a_crash(snapshot, tmp_path):
    """A small sample can leave a subset without images (no shards): the error says which and what
    to do."""
    empty = tmp_path / "snapshot"
    shutil.copytree(snapshot, empty)
    unseen = Path(contracts.shards(str(empty), "unseen"))
    for tar in unseen.glob("*.tar"):
        tar.unlink()
    (unseen / contracts.SHARD_SIZES).write_text("{}")
    with pytest.raises(
        evaluate.EvaluateError,
        match="benchmark unseen: no images to evaluate .*evaluate.benchmarks",
    ):
        evaluate.evaluate(
            subset_files(empty),
            "biotrove-tiny",
            None,
            tmp_path / "out",
            {"benchmarks": ["balanced", "unseen"]},
        )
    assert not (tmp_path / "out").exists()
