"""The near-duplicate overlap check: the index finds exactly the pairs within the threshold, the
sample's planted re-uploads are found and its distinct images are not, and through the stages
(download hashes, the check, the shard order) Train's copies of evaluation images, the external
benchmarks' included, are left out."""

from __future__ import annotations

import io
import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from tests.images import download, shard
from tests.test_subsets import rows_of, write_curated
from workflow_scripts.common import contracts
from workflow_scripts.common.config import settings
from workflow_scripts.common.duck import quote
from workflow_scripts.images import check_image_overlap, hash_external_benchmark, perceptual
from workflow_scripts.images.near_duplicates import codes, index_shape, near_duplicates, within
from workflow_scripts.sample import images as sample_images

THRESHOLD = settings("overlap")["near_duplicate_threshold"]


def brute_force(
    index: np.ndarray, queries: np.ndarray, threshold: int
) -> set[tuple[int, int, int]]:
    distances = np.unpackbits(queries[:, None, :] ^ index[None, :, :], axis=2).sum(axis=2)
    return {(q, i, distances[q, i]) for q, i in zip(*np.nonzero(distances <= threshold))}


@pytest.mark.parametrize("threshold", [0, 4, 10, 21, 31])
def test_the_index_finds_exactly_the_pairs_within_the_threshold(threshold):
    rng = np.random.default_rng(threshold)
    index = rng.integers(0, 256, (1500, 32), dtype=np.uint8)
    bits = np.unpackbits(index[rng.integers(0, 1500, 1000)], axis=1)
    for row, flips in enumerate(
        rng.integers(0, 40, 1000)
    ):  # copies 0-39 bits away, then random codes
        bits[row, rng.choice(256, flips, replace=False)] ^= 1
    queries = np.concatenate(
        [np.packbits(bits, axis=1), rng.integers(0, 256, (500, 32), dtype=np.uint8)]
    )
    expected = brute_force(index, queries, threshold)
    assert len(expected) >= 10
    for blocks in (
        {},
        {"index_block": 400, "query_batch": 300},
    ):  # the index in blocks, the queries in batches
        assert (
            set(zip(*(column.tolist() for column in within(index, queries, threshold, **blocks))))
            == expected
        )
    substrings, bits_per_substring, flips = index_shape(threshold)
    assert (
        substrings * (flips + 1) > threshold
        and substrings * bits_per_substring <= 256
        and substrings <= 11
    )


def photo_hashes(photos, table, out) -> None:
    """A subset's hashes as the download jobs write them, from the sample bucket's images."""
    by_id = {int(key.split("/")[1]): data for key, data in photos.items()}
    rows = []
    for (photo_id,) in duckdb.sql(
        f"SELECT photo_id FROM read_parquet({quote(table)}) ORDER BY 1"
    ).fetchall():
        rows.append((photo_id, *perceptual.pdq(by_id[photo_id])))
    ids, *hashes = zip(*rows)
    con = duckdb.connect()
    con.register(
        "hashed",
        perceptual.hashes_table(
            photo_id=pa.array(ids, pa.int64()), **dict(zip(perceptual.COLUMNS, hashes))
        ),
    )
    con.execute(f"COPY hashed TO {quote(out)} (FORMAT parquet)")


def test_planted_near_duplicates_are_found_and_distinct_images_are_not(
    sample_months, photos, planted, tmp_path
):
    subsets = sample_months / "2024-09-27" / "subsets"
    hashes = {}
    for subset in contracts.SUBSETS:
        hashes[subset] = str(tmp_path / f"{subset}.parquet")
        photo_hashes(photos, subsets / f"{subset}.parquet", hashes[subset])
    con = duckdb.connect()
    for subset in contracts.SPLIT_SUBSETS:
        table = quote(subsets / f"{subset}.parquet")
        con.execute(f"CREATE VIEW {subset} AS SELECT * FROM read_parquet({table})")
    found = near_duplicates(con, hashes, settings("overlap"))

    where = {}  # photo -> (its subset, its split or None)
    for subset in contracts.SUBSETS:
        split = "split" if subset in contracts.SPLIT_SUBSETS else "NULL"
        table = quote(subsets / f"{subset}.parquet")
        where |= {
            photo: (subset, side)
            for photo, side in duckdb.sql(
                f"SELECT photo_id, {split} FROM read_parquet({table})"
            ).fetchall()
        }
    pairs = {(p["train"], p["photo_id"]) for p in found["near_duplicates"]}
    between = {(p["photo_id"], p["other_photo_id"]) for p in found["between_evaluation_sets"]}
    grouped = {
        frozenset(group)
        for subset in contracts.SPLIT_SUBSETS
        for group in found[f"inside_{subset}"]["photo_ids"]
    }
    expected = hits = 0
    for original, copy in planted["near_duplicates"]:
        if original not in where or copy not in where:
            continue
        expected += 1  # both in subsets: named as a pair, inside a group, or between two sets
        hits += bool({(original, copy), (copy, original)} & (pairs | between)) or any(
            {original, copy} <= group for group in grouped
        )
    assert expected >= 20 and hits / expected >= 0.95, (hits, expected)
    kinds = set(planted["near_duplicate_edits"].values())
    assert kinds == set(sample_images.NEAR_DUPLICATE_EDITS)

    # every pair reported is planted (an edited or an exact re-upload): no distinct images matched
    planted_pairs = {frozenset(pair) for pair in planted["near_duplicates"]} | {
        frozenset((int(again), original))
        for again, original in planted["reuploaded_images"].items()
    }
    assert all(frozenset(pair) in planted_pairs for pair in pairs | between)
    assert all(any(group <= pair for pair in planted_pairs) for group in grouped)
    table = duckdb.sql(
        " UNION ALL ".join(
            f"SELECT photo_id, hash FROM read_parquet({quote(path)})" for path in hashes.values()
        )
    ).to_arrow_table()
    by_photo = dict(zip(table.column(0).to_pylist(), codes(table.column(1))))
    photos = sorted(
        {photo for pair in planted["near_duplicates"] for photo in pair} & set(by_photo)
    )
    distances = brute_force(
        np.stack([by_photo[p] for p in photos]), np.stack([by_photo[p] for p in photos]), THRESHOLD
    )
    close = {frozenset((photos[a], photos[b])) for a, b, _ in distances if a != b}
    assert close <= planted_pairs


def textured(seed: int, size=(96, 72)) -> np.ndarray:
    """A photo-like image (the sample's renderer): PDQ needs texture, and flat images are not
    matched."""
    signature = sample_images.species_signature(seed, seed)
    return sample_images.render(signature, *size, photo_id=seed)


def write_photo(mirror, photo_id: int, pixels: np.ndarray, quality: int = 90) -> bytes:
    data = io.BytesIO()
    Image.fromarray(pixels).save(data, "JPEG", quality=quality)
    (mirror / "photos" / str(photo_id)).mkdir(exist_ok=True)
    (mirror / "photos" / str(photo_id) / "medium.jpg").write_bytes(data.getvalue())
    return data.getvalue()


@pytest.mark.slow
def test_train_copies_of_evaluation_images_are_left_out(photo_server, tmp_path):
    """Photo 9 (Balanced) is photo 2 brightened; photo 4 (Train) is Train's test photo 1 re-encoded;
    an external benchmark has photo 3 mirrored; photos 5, 6 and 7 are distinct images; photo 8
    (genus_sampled's train split) is its test photo 7 re-encoded; photo 11 (LifeStages) is Unseen's
    photo 5 brightened, a pair between two evaluation sets."""
    served, _, mirror = photo_server
    originals = {photo_id: textured(photo_id) for photo_id in (1, 2, 3, 5, 6, 7)}
    for photo_id, pixels in originals.items():
        write_photo(mirror, photo_id, pixels)
    write_photo(mirror, 4, originals[1], quality=60)
    write_photo(mirror, 9, np.clip(originals[2] * 1.15, 0, 255).astype(np.uint8))
    write_photo(mirror, 8, originals[7], quality=60)
    write_photo(mirror, 11, np.clip(originals[5] * 1.15, 0, 255).astype(np.uint8))
    external = tmp_path / "external"
    external.mkdir()
    Image.fromarray(originals[3][:, ::-1]).save(external / "x.jpg", quality=85)
    (tmp_path / "external.csv").write_text("file,label\nx.jpg,Aus alba\n")
    spec = {
        "format": "folder",
        "images": str(external),
        "metadata": str(tmp_path / "external.csv"),
        "key_column": "file",
        "label_column": "label",
        "name_mode": "scientific",
    }
    external_hashes = tmp_path / contracts.external_hashes("snapshot", "field_guide")
    assert (
        hash_external_benchmark.main(
            [
                "--benchmark",
                "field_guide",
                "--out",
                str(external_hashes),
                "--settings",
                json.dumps({"external": {"field_guide": spec}}),
            ]
        )
        == 0
    )

    members = {
        "train": [
            {**r, "split": "test" if r["photo_id"] == 1 else "train"}
            for r in rows_of("Aus alba", 4, "Aves", 1)
        ],
        "balanced": rows_of("Bus beta", 1, "Insecta", 9),
        "unseen": rows_of("Cus gamma", 1, "Insecta", 5),
        "lifestages": rows_of("Dus delta", 1, "Insecta", 6)
        + rows_of("Dus delta", 1, "Insecta", 11),
        "genus_sampled": [
            {**r, "split": "test" if r["photo_id"] == 7 else "train"}
            for r in rows_of("Eus eps", 2, "Insecta", 7)
        ],
    }
    (tmp_path / "subsets").mkdir()
    for subset, rows in members.items():
        write_curated(rows, tmp_path / "subsets" / f"{subset}.parquet")
        download(
            tmp_path / "subsets" / f"{subset}.parquet",
            tmp_path / "images" / subset,
            {"url_rewrite": {"from": "https://example.org", "to": served}, "threads": 2},
        )
    report_path = tmp_path / "images" / "overlap_report.json"
    assert (
        check_image_overlap.main(
            [
                "--subsets",
                *(str(tmp_path / "subsets" / f"{s}.parquet") for s in members),
                "--downloads",
                *(str(tmp_path / "images" / s / "download_report.json") for s in members),
                "--external-hashes",
                str(external_hashes),
                "--out",
                str(report_path),
                "--pairs",
                str(tmp_path / "images" / "near_duplicates.csv"),
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    overlapping = [
        {k: p[k] for k in ("subset", "train", "benchmark", "photo_id")}
        for p in report["near_duplicates"]
    ]
    assert overlapping == [
        {"subset": "train", "train": 2, "benchmark": "balanced", "photo_id": 9},
        {"subset": "train", "train": 3, "benchmark": "field_guide", "photo_id": "x.jpg"},
        {"subset": "train", "train": 4, "benchmark": "train_test", "photo_id": 1},
        {"subset": "genus_sampled", "train": 8, "benchmark": "genus_sampled", "photo_id": 7},
    ]
    assert all(p["distance"] <= THRESHOLD for p in report["near_duplicates"])
    assert report["images"]["drop_from_shards"] == {
        "train": {"exact_duplicate": [], "near_duplicate": [2, 3, 4]},
        "genus_sampled": {"exact_duplicate": [], "near_duplicate": [8]},
    }
    between = report["images"]["near"]["between_evaluation_sets"]
    assert [
        {k: p[k] for k in ("benchmark", "photo_id", "other", "other_photo_id")} for p in between
    ] == [{"benchmark": "lifestages", "photo_id": 11, "other": "unseen", "other_photo_id": 5}]
    assert (tmp_path / "images" / "near_duplicates.md").is_file()

    train = tmp_path / "subsets" / "train.parquet"
    shards = shard(
        train,
        tmp_path / "images" / "train",
        tmp_path / "shards",
        drop=report["images"]["drop_from_shards"]["train"],
    )
    assert shards["splits"] == {"test": 1} and shards["left_out_as_duplicates"][
        "near_duplicate"
    ] == [2, 3, 4]
    shards = shard(
        tmp_path / "subsets" / "genus_sampled.parquet",
        tmp_path / "images" / "genus_sampled",
        tmp_path / "genus_sampled_shards",
        drop=report["images"]["drop_from_shards"]["genus_sampled"],
    )
    assert shards["splits"] == {"test": 1}
    assert shards["left_out_as_duplicates"]["near_duplicate"] == [8]
