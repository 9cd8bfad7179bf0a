"""Exports: LAION's clip_benchmark scores our clip_benchmark export of the demo model's benchmark
exactly as our evaluation does; the iNaturalist 2021 export reads as COCO with the subsets' counts
and taxonomy; shot-band accuracy on a hand case."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools.coco import COCO

from tests.conftest import REPO
from tests.images import snapshot_of
from tests.project_copy import hashes
from tests.test_evaluate import folder_benchmark, picture, subset_files
from tests.test_subsets import rows_of, write_curated
from workflow_scripts.common import cli, contracts
from workflow_scripts.common.benchmarks import open_benchmark
from workflow_scripts.common.config import ConfigError, load_config, settings, validated
from workflow_scripts.common.templates import TEMPLATES
from workflow_scripts.evaluate import shot_bands as shot_bands_cli
from workflow_scripts.evaluate import stage as evaluate
from workflow_scripts.evaluate.shot_bands import band_names, predictions_by_model, shot_bands
from workflow_scripts.evaluate.zeroshot import load_model
from workflow_scripts.export import clip_benchmark_export, inat_export


@pytest.fixture(scope="module")
def train_export(demo_model, tmp_path_factory):
    """The demo model's benchmark on Train's test split (every Train species) and its
    clip_benchmark export: (benchmark, export folder, shards written)."""
    snapshot, _ = demo_model
    benchmark = open_benchmark("train", subset_files(snapshot, ["train"]), {})
    out = tmp_path_factory.mktemp("export") / "train"
    return benchmark, out, clip_benchmark_export.export(benchmark, out, samples_per_shard=100)


def test_the_clip_benchmark_export_holds_the_benchmark(train_export):
    benchmark, out, written = train_export
    assert written == 3
    assert (out / "test" / "nshards.txt").read_text() == "3\n"
    assert (out / "classnames.txt").read_text().splitlines() == benchmark.class_keys
    assert [
        line.format(c="x")
        for line in (out / "zeroshot_classification_templates.txt").read_text().splitlines()
    ] == [template("x") for template in TEMPLATES]
    manifest = duckdb.sql(f"SELECT * FROM read_csv('{out}/manifest.csv')").fetchall()
    assert [(row[1], row[2]) for row in manifest] == list(
        zip(benchmark.keys.tolist(), benchmark.labels.tolist())
    )


def test_clip_benchmark_scores_the_export_as_our_evaluation_does(
    train_export, demo_model, tmp_path
):
    """clip_benchmark 1.6.2 in fp32 (--no_amp) gives our metrics.json's top-1, top-5 and mean
    per-class recall."""
    benchmark, out, _ = train_export
    _, checkpoint = demo_model
    ours = evaluate.evaluate_benchmark(
        load_model("biotrove-tiny", str(checkpoint)),
        "train",
        benchmark,
        settings("evaluate"),
        tmp_path,
    )["metrics"]  # what metrics.json holds
    result = tmp_path / "result.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.clip_benchmark",
            "eval",
            "--dataset",
            "wds/train",
            "--dataset_root",
            str(out),
            "--model",
            "biotrove-tiny",
            "--pretrained",
            str(checkpoint),
            "--no_amp",
            "--batch_size",
            "64",
            "--num_workers",
            "0",
            "--output",
            str(result),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=600,
    )
    theirs = json.loads(result.read_text())["metrics"]
    assert ours["images"] > 100 and ours["classes"] > 100 and 0 < ours["top1"] < ours["top5"] < 1
    assert theirs["acc1"] * ours["images"] == pytest.approx(ours["top1_hits"], abs=1e-6)
    assert theirs["acc5"] * ours["images"] == pytest.approx(ours["top5_hits"], abs=1e-6)
    assert round(theirs["mean_per_class_recall"], 6) == ours["macro_top1"]


def test_a_gif_becomes_a_png_of_the_pixels_evaluation_decodes(tmp_path):
    """clip_benchmark reads JPEG, PNG and WebP: those keep their bytes, a GIF becomes a PNG of the
    RGB pixels our evaluation gets; an external benchmark's keys become positions, its image keys
    go to the manifest."""
    spec = folder_benchmark(tmp_path, [("a/one.gif", "Aus alba"), ("b/two.jpg", "Bus beta")])
    gif = io.BytesIO()
    Image.new("P", (20, 10), 3).save(gif, format="GIF")
    (tmp_path / "images" / "a" / "one.gif").write_bytes(gif.getvalue())
    (tmp_path / "images" / "b" / "two.jpg").write_bytes(picture(90, "JPEG"))
    external = json.dumps({"birds": {**spec, "name_mode": "scientific"}})
    assert (
        clip_benchmark_export.main(
            [
                "--benchmark",
                "birds",
                "--shards",
                "--tables",
                "--external",
                external,
                "--settings",
                json.dumps({"samples_per_shard": 10}),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    with tarfile.open(tmp_path / "out" / "test" / "0.tar") as tar:
        members = {member.name: tar.extractfile(member).read() for member in tar}
    assert sorted(members) == ["00000000.cls", "00000000.png", "00000001.cls", "00000001.jpg"]
    assert members["00000001.jpg"] == picture(90, "JPEG") and members["00000001.cls"] == b"1"
    converted = np.asarray(Image.open(io.BytesIO(members["00000000.png"])))
    assert np.array_equal(converted, np.asarray(Image.open(gif).convert("RGB")))
    assert (tmp_path / "out" / contracts.CLIP_BENCHMARK_MANIFEST).read_text().splitlines() == [
        "key,image,cls,class_name",
        "00000000,a/one.gif,0,Aus alba",
        "00000001,b/two.jpg,1,Bus beta",
    ]


def test_a_class_name_clip_benchmark_would_change_is_refused():
    with pytest.raises(clip_benchmark_export.ExportError, match="one per line, stripped"):
        clip_benchmark_export.class_lines(["Aus alba", "Bus beta "])


@pytest.fixture(scope="module")
def located(tmp_path_factory) -> Path:
    """Train (three splits, two species) and LifeStages (two labels of one species) with
    coordinates, licenses and one GIF, downloaded and sharded."""

    def placed(rows: list[dict]) -> list[dict]:
        return [
            {
                **row,
                "latitude": 10.5 + row["photo_id"],
                "longitude": -3.25,
                "positional_accuracy": row["photo_id"],
                "license": "CC0" if row["photo_id"] % 3 else "CC-BY-NC",
            }
            for row in rows
        ]

    splits = ("train", "train", "val", "test")
    tables = {
        "train": placed(
            [
                {**row, "split": splits[row["photo_id"] % 4]}
                for row in rows_of("Aus alba", 6, "Aves", 1) + rows_of("Bus beta", 6, "Insecta", 11)
            ]
        ),
        "lifestages": placed(
            [
                {**row, "label": f"common Dus delta {'larva' if row['photo_id'] % 2 else 'adult'}"}
                for row in rows_of("Dus delta", 4, "Insecta", 51)
            ]
        ),
    }
    return snapshot_of(
        tmp_path_factory.mktemp("located"),
        tables,
        lambda row: picture(row["photo_id"] * 4, "GIF" if row["photo_id"] == 2 else "JPEG"),
    )


@pytest.mark.slow
@pytest.mark.xdist_group("export")
def test_clip_benchmark_cli_reads_the_benchmarks_shards_and_table_it_is_given(
    located, tmp_path, capsys
):
    ((shards, table),) = subset_files(located, ["lifestages"]).values()
    args = [
        "--benchmark",
        "lifestages",
        "--shards",
        str(shards),
        "--tables",
        str(table),
        "--settings",
        json.dumps({"samples_per_shard": 3}),
        "--out",
        str(tmp_path / "out"),
    ]
    assert (
        clip_benchmark_export.main([*args, "--provenance", str(tmp_path / "out.provenance.json")])
        == 0
    )
    assert (tmp_path / "out" / "test" / "nshards.txt").read_text() == "2\n"  # 4 images, 3 per tar
    recorded = json.loads((tmp_path / "out.provenance.json").read_text())["inputs"]
    assert sorted(recorded) == sorted([str(shards), str(table)])
    ((train, train_table),) = subset_files(located, ["train"]).values()
    with pytest.raises(SystemExit):
        clip_benchmark_export.main(
            [*args[:2], "--shards", str(train), "--tables", str(train_table), *args[6:]]
        )
    assert (
        "those of lifestages expected (--benchmark lifestages), got train"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "subset, sets, column",
    [("train", ("train", "val", "test"), "species"), ("lifestages", ("test",), "label")],
)
@pytest.mark.slow
@pytest.mark.xdist_group("export")
def test_inat2021_export_reads_as_coco_with_the_subsets_counts_and_taxonomy(
    located, tmp_path, subset, sets, column
):
    out = tmp_path / subset
    table = contracts.subset_table(str(located), subset)
    written = inat_export.export(
        Path(contracts.shards(str(located), subset)),
        Path(table),
        subset,
        out,
        {"Aves": "class"},
        "2024-09-27",
    )
    rows = {
        row["photo_id"]: row
        for row in duckdb.sql(f"SELECT * FROM '{table}'").df().to_dict("records")
    }
    classes = sorted({row[column] for row in rows.values()})
    extracted = tmp_path / "extracted"
    for set_name in sets:
        coco = COCO(str(out / f"{set_name}.json"))
        with tarfile.open(out / f"{set_name}.tar") as tar:  # as the competition's archives open
            headers = tar.getmembers()
            tar.extractall(extracted, filter="data")
        names = [member.name for member in headers]  # by name, as the JSON lists them
        assert names == sorted(names) == [image["file_name"] for image in coco.dataset["images"]]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in headers} == {(0, 0, 0, "", 0o644)}
        expected = {
            photo_id for photo_id, row in rows.items() if row.get("split", "test") == set_name
        }
        assert written[set_name] == {"images": len(expected), "not_in_shards": 0}
        assert set(coco.getImgIds()) == expected
        categories = coco.loadCats(coco.getCatIds())
        assert [
            c["name"] for c in categories
        ] == classes  # every class in every set: ids agree across sets
        licenses = {entry["id"]: entry["name"] for entry in coco.dataset["licenses"]}
        for image in coco.loadImgs(coco.getImgIds()):
            row, (annotation,) = (
                rows[image["id"]],
                coco.loadAnns(coco.getAnnIds(imgIds=image["id"])),
            )
            category = coco.loadCats(annotation["category_id"])[0]
            assert category["name"] == row[column] and category["genus"] == row["genus"]
            assert category["family"] == row["family"] and category["kingdom"] == row["kingdom"]
            assert category["specific_epithet"] == row["species"].split()[1]
            # the configured category (subsets.categories' defaults), else "other"
            assert category["supercategory"] == (
                "Aves"
                if row["class"] == "Aves"
                else row["kingdom"]
                if row["kingdom"] in ("Plantae", "Fungi")
                else "other"
            )
            assert image[
                "file_name"
            ] == f"{set_name}/{category['image_dir_name']}/{row['photo_uuid']}." + (
                "gif" if image["id"] == 2 else "jpg"
            )
            with Image.open(extracted / image["file_name"]) as file:
                assert file.size == (image["width"], image["height"]) == (40, 40)
            assert (
                licenses[image["license"]],
                image["latitude"],
                image["location_uncertainty"],
            ) == (row["license"], row["latitude"], row["positional_accuracy"])
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{name}.{suffix}" for name in sets for suffix in ("json", "tar")
    )


def test_shot_bands_on_a_hand_case(tmp_path):
    """Train's train split: Aus alba 4 images (band 3+), Bus beta 1 (band 1-2); Unseen's Cus gamma
    none (absent); genus_sampled banded by its own train split: Mus alba 3 (band 3+), though Train
    has none. Top-1 and the class mean per band, from cached predictions."""
    train = [
        {**row, "split": "train"}
        for row in rows_of("Aus alba", 4, "Aves", 1) + rows_of("Bus beta", 1, "Aves", 5)
    ]
    train += [
        {**row, "split": "test"}
        for row in rows_of("Aus alba", 3, "Aves", 11) + rows_of("Bus beta", 2, "Aves", 21)
    ]
    (tmp_path / "subsets").mkdir()
    write_curated(train, tmp_path / "subsets" / "train.parquet")
    write_curated(rows_of("Cus gamma", 2, "Insecta", 31), tmp_path / "subsets" / "unseen.parquet")
    write_curated(
        [
            {**row, "split": "test" if row["photo_id"] > 43 else "train"}
            for row in rows_of("Mus alba", 5, "Aves", 41)
        ],
        tmp_path / "subsets" / "genus_sampled.parquet",
    )
    evaluation = tmp_path / "eval"
    evaluation.mkdir()

    def predicted(photo_ids: list[int], labels: list[int], top1: list[int], name: str) -> None:
        pq.write_table(
            pa.table({"photo_id": photo_ids, "label": labels, "top_ids": [[t, 9] for t in top1]}),
            evaluation / contracts.predictions(name),
        )

    predicted(
        [11, 12, 13, 21, 22], [0, 0, 0, 1, 1], [0, 1, 1, 1, 1], "train"
    )  # Aus 1 of 3, Bus 2 of 2
    predicted([31, 32], [0, 0], [1, 1], "unseen")
    predicted([44, 45], [0, 0], [0, 1], "genus_sampled")
    settings = {
        "benchmarks": ["train", "unseen", "genus_sampled"],
        "levels_benchmark": "train",
        "shot_bands": [1, 3],
    }
    tables = {
        subset: tmp_path / "subsets" / f"{subset}.parquet"
        for subset in ("train", "unseen", "genus_sampled")
    }
    records = shot_bands(
        tables,
        {"m": {name: evaluation / contracts.predictions(name) for name in tables}},
        tmp_path / "out",
        settings,
    )
    assert band_names([1, 3]) == ["absent", "1-2", "3+"]
    assert [(r["benchmark"], r["band"], r["classes"], r["images"], r["hits"]) for r in records] == [
        ("BT-Test", 1, 1, 2, 2),
        ("BT-Test", 2, 1, 3, 1),
        ("BTU", 0, 1, 2, 0),
        ("GS", 2, 1, 2, 1),
    ]
    table = (tmp_path / "out" / f"{contracts.SHOT_BANDS}.csv").read_text().splitlines()
    assert table[1:] == [
        "m,BT-Test,1-2,1,2,100.0 ± 32.88,100.0",
        "m,BT-Test,3+,1,3,33.3 ± 36.54,33.3",
        "m,BTU,absent,1,2,0.0 ± 32.88,0.0",
        "m,GS,3+,1,2,50.0 ± 40.55,50.0",
    ]
    assert (tmp_path / "out" / f"{contracts.SHOT_BANDS}.png").stat().st_size > 0

    # as the rule runs it: Train's table, the benchmarks' (Train's again among them), the
    # predictions per model
    predictions = [str(evaluation / contracts.predictions(name)) for name in settings["benchmarks"]]
    assert (
        shot_bands_cli.main(
            [
                "--train",
                str(tables["train"]),
                "--tables",
                *map(str, tables.values()),
                "--predictions",
                *predictions,
                "--models",
                "m",
                "--out",
                str(tmp_path / "cli"),
                "--settings",
                json.dumps(settings),
            ]
        )
        == 0
    )
    assert hashes(tmp_path / "cli") == hashes(tmp_path / "out")
    with pytest.raises(cli.StageError, match="no table of genus_sampled given"):
        shot_bands(
            {"train": tables["train"], "unseen": tables["unseen"]}, {}, tmp_path / "none", settings
        )


def test_predictions_are_grouped_per_model_in_the_tables_order():
    evaluate_settings = settings(
        "evaluate", {"benchmarks": ["train", "unseen"], "levels_benchmark": "train"}
    )
    files = [
        Path(f"{model}/{name}.predictions.parquet")
        for model in ("a", "b")
        for name in ("train", "unseen")
    ]
    assert predictions_by_model(files, ["a", "b"], evaluate_settings) == {
        model: {name: Path(f"{model}/{name}.predictions.parquet") for name in ("train", "unseen")}
        for model in ("a", "b")
    }
    with pytest.raises(ValueError, match="3 predictions for 2 models x 2 benchmarks"):
        predictions_by_model(files[:3], ["a", "b"], evaluate_settings)
    with pytest.raises(
        ValueError, match="a/unseen.predictions.parquet: expected model a's predictions"
    ):
        predictions_by_model([files[1], files[0], *files[2:]], ["a", "b"], evaluate_settings)


@pytest.mark.parametrize("edges", [[2, 10], [1, 10, 10], [1, 5, 3]])
def test_shot_bands_must_start_at_one_and_increase(edges):
    config = load_config(REPO / "config.yaml")
    config["evaluate"]["shot_bands"] = edges
    with pytest.raises(ConfigError, match="evaluate.shot_bands"):
        validated(config)
