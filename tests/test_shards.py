"""Shards from a real img2dataset download: every caption type, the metadata, true formats, the same
bytes for any number of shard jobs and worker processes; duplicate images left out."""

from __future__ import annotations

import hashlib
import json
import tarfile

import duckdb
import pytest
import webdataset as wds

from tests.images import download, shard, store_of
from tests.project_copy import hashes
from tests.test_subsets import rows_of, write_curated
from workflow_scripts.common import tars
from workflow_scripts.common.captions import CAPTION_TYPES
from workflow_scripts.images import check_image_overlap, shard_order

SETTINGS = {
    "samples_per_shard": 3,
    "window_size": 4,
    "segment_size": 2,
    "seed": 1,
    "shards_per_job": 1,
}


@pytest.mark.slow
def test_shards_read_back_with_captions_metadata_and_true_formats(photo_server, tmp_path):
    served, _, _ = photo_server
    subset = write_curated(
        rows_of("Aus alba", 5, "Aves", 1) + rows_of("Bus beta", 3, "Insecta", 6),
        tmp_path / "subset.parquet",
    )
    download(
        subset,
        tmp_path / "images",
        {
            "url_rewrite": {"from": "https://example.org", "to": served},
            "threads": 4,
            "timeout_seconds": 5,
            "urls_per_job": 3,
        },
    )
    report = shard(
        subset, tmp_path / "images", tmp_path / "shards", SETTINGS
    )  # three parts of one shard
    assert (report["samples"], report["shards"], report["without_image"]) == (8, 3, [])
    assert report["settings"]["chunk_size"] == 4  # recorded as before the rename: the same bytes
    sizes = json.loads((tmp_path / "shards" / "sizes.json").read_text())
    assert sizes == {"shard-000000.tar": 3, "shard-000001.tar": 3, "shard-000002.tar": 2}
    tars = [str(tmp_path / "shards" / name) for name in sizes]
    samples = {s["__key__"]: s for s in wds.WebDataset(tars, shardshuffle=False)}
    assert sorted(samples, key=int) == [str(i) for i in range(1, 9)]
    assert "png" in samples["8"] and all("jpg" in samples[k] for k in samples if k != "8")
    first = samples["1"]
    assert {f"{kind.lower()}.txt" for kind in CAPTION_TYPES} <= set(
        first
    )  # webdataset lowercases extensions
    with tarfile.open(tars[0]) as archive:
        assert {f"{kind}.txt" for kind in CAPTION_TYPES} <= {
            m.name.split(".", 1)[1] for m in archive
        }
    assert first["com.txt"].decode() == "a photo of common Aus alba."
    assert first["taxonomic_name.txt"].decode() == "Animalia Chordata Aves OAves FAus Aus alba."
    assert (
        json.loads(first["json"])["photo_id"] == 1
        and json.loads(first["json"])["species"] == "Aus alba"
    )
    assert [s["__key__"] for s in wds.WebDataset(tars, shardshuffle=False)] != [
        str(i) for i in range(1, 9)
    ]

    # the same bytes from one job of three shards, two processes, as from three jobs
    shard(
        subset,
        tmp_path / "images",
        tmp_path / "again",
        {**SETTINGS, "shards_per_job": 3},
        processes=2,
    )
    names = [
        *sizes,
        "sizes.json",
        "shards_report.json",
        "shuffle_quality.csv",
        "shuffle_quality.png",
    ]
    digests = [
        {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in names}
        for folder in (tmp_path / "shards", tmp_path / "again")
    ]
    assert digests[0] == digests[1]


@pytest.mark.slow
def test_train_is_sharded_by_split(photo_server, tmp_path):
    """Train's train, val and test splits are shard sets of their own (each with sizes.json):
    training and evaluation read one without decoding the others; the same bytes from one job per
    set as from several."""
    served, _, _ = photo_server
    split = {1: "test", 2: "val", 5: "test"}
    rows = [
        {**r, "split": split.get(r["photo_id"], "train")}
        for r in rows_of("Aus alba", 5, "Aves", 1) + rows_of("Bus beta", 3, "Insecta", 6)
    ]
    subset = write_curated(rows, tmp_path / "train.parquet")
    download(
        subset, tmp_path / "images", {"url_rewrite": {"from": "https://example.org", "to": served}}
    )
    report = shard(subset, tmp_path / "images", tmp_path / "shards", SETTINGS)
    assert report["splits"] == {"test": 2, "train": 5, "val": 1} and report["samples"] == 8
    keys = {}
    for name in ("train", "val", "test"):
        folder = tmp_path / "shards" / name
        tars = [str(folder / tar) for tar in json.loads((folder / "sizes.json").read_text())]
        keys[name] = sorted(int(s["__key__"]) for s in wds.WebDataset(tars, shardshuffle=False))
        assert all(
            json.loads(s["json"])["split"] == name for s in wds.WebDataset(tars, shardshuffle=False)
        )
    assert keys == {"train": [3, 4, 6, 7, 8], "val": [2], "test": [1, 5]}
    assert not list((tmp_path / "shards").glob("*.tar"))
    shard(subset, tmp_path / "images", tmp_path / "again", {**SETTINGS, "shards_per_job": 2})
    assert hashes(tmp_path / "shards") == hashes(tmp_path / "again")


@pytest.mark.slow
def test_duplicate_images_across_and_inside_subsets(photo_server, tmp_path):
    """Photo 9 is photo 2's image again (Balanced vs Train), photo 10 is photo 3's (both in
    Train)."""
    served, _, mirror = photo_server
    for again, original in ((9, 2), (10, 3)):
        (mirror / "photos" / str(again)).mkdir()
        (mirror / "photos" / str(again) / "medium.jpg").write_bytes(
            (mirror / "photos" / str(original) / "medium.jpg").read_bytes()
        )
    members = {
        "train": rows_of("Aus alba", 3, "Aves", 1) + rows_of("Aus alba", 1, "Aves", 10),
        "balanced": rows_of("Bus beta", 1, "Insecta", 9),
        "unseen": rows_of("Cus gamma", 1, "Insecta", 4),
        "lifestages": rows_of("Dus delta", 1, "Insecta", 5),
        "genus_sampled": [{**r, "split": "test"} for r in rows_of("Eus eps", 1, "Insecta", 6)],
    }
    (tmp_path / "subsets").mkdir()
    for subset, rows in members.items():
        rows = [{**r, "split": "train"} for r in rows] if subset == "train" else rows
        write_curated(rows, tmp_path / "subsets" / f"{subset}.parquet")
        download(
            tmp_path / "subsets" / f"{subset}.parquet",
            tmp_path / "images" / subset,
            {"url_rewrite": {"from": "https://example.org", "to": served}, "threads": 2},
        )
    report_path = tmp_path / "images" / "overlap_report.json"
    subsets = [str(tmp_path / "subsets" / f"{subset}.parquet") for subset in members]
    downloads = [str(tmp_path / "images" / subset / "download_report.json") for subset in members]
    assert (
        check_image_overlap.main(
            ["--subsets", *subsets, "--downloads", *downloads, "--out", str(report_path)]
        )
        == 0
    )
    images = json.loads(report_path.read_text())["images"]
    assert images["shared_between_subsets"] == [
        {"between": ["train", "balanced"], "count": 1, "examples": ["2=9"]}
    ]
    assert images["drop_from_shards"] == {
        "train": {"exact_duplicate": [2], "near_duplicate": []},
        "genus_sampled": {"exact_duplicate": [], "near_duplicate": []},
    }
    assert images["inside_train"] == {"groups": 1, "photos": 2, "photo_ids": [[3, 10]]}
    assert images["inside_genus_sampled"] == {"groups": 0, "photos": 0, "photo_ids": []}

    train = tmp_path / "subsets" / "train.parquet"
    images_of_train = tmp_path / "images" / "train"
    # the order job reads what to leave out from the report, as the rule runs it
    assert (
        shard_order.main(
            [
                "--subset",
                str(train),
                "--download",
                str(images_of_train / "download_report.json"),
                "--image-overlap",
                str(report_path),
                "--out",
                str(images_of_train / "order.parquet"),
                "--store",
                str(store_of(images_of_train)),
            ]
        )
        == 0
    )
    ordered = duckdb.sql(f"SELECT photo_id FROM '{images_of_train / 'order.parquet'}'").fetchall()
    assert sorted(row[0] for row in ordered) == [
        1,
        3,
        10,
    ]  # photo 2 left out: Balanced has its image
    report = shard(
        train, images_of_train, tmp_path / "shards", drop=images["drop_from_shards"]["train"]
    )
    assert (report["samples"], report["left_out_as_duplicates"]) == (
        3,
        {"exact_duplicate": [2], "near_duplicate": []},
    )
    first = tmp_path / "shards" / "train" / "shard-000000.tar"
    keys = {s["__key__"] for s in wds.WebDataset(str(first), shardshuffle=False)}
    assert keys == {"1", "3", "10"}


def test_our_tar_writer_writes_webdatasets_bytes(tmp_path):
    """common.tars writes shards without importing webdataset (it brings torch into every shard
    job); its bytes must stay those of webdataset's own TarWriter(mtime=0) for the same samples."""
    samples = [
        {"__key__": "000001", "jpg": b"\xff\xd8\xff" + bytes(range(256)) * 9, "txt": "a caption é"},
        {"__key__": "000002", "png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 700, "json": '{"a": 1}'},
        {"__key__": "000003", "gif": b"GIF89a" + b"\x01" * 33, "txt": ""},
    ]
    with tars.tar_writer(tmp_path / "ours.tar") as ours:
        for sample in samples:
            ours.write(sample)
    with wds.TarWriter(str(tmp_path / "webdataset.tar"), mtime=0) as theirs:
        for sample in samples:
            theirs.write(sample)
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "webdataset.tar").read_bytes()
