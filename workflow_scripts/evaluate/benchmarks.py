"""What evaluation reads: the subsets' shards, or an external benchmark (an image folder or
webdataset tars, with a metadata CSV naming each image's label), and the class names a
classifier is built from at each taxonomic level and name mode (Table 8).

An external benchmark's settings (config evaluate.external.<name>):
    format: folder | webdataset
    images: the folder (files named by key_column, relative to it) or the folder of .tar shards
    metadata: the CSV; key_column: the file path (folder) or the sample's __key__ (webdataset)
    label_column: the class names given to the classifier; name_mode: what kind of names they are
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import webdataset as wds
from PIL import Image
from tqdm import tqdm

from workflow_scripts.common import contracts
from workflow_scripts.common.captions import LEVELS, species_names

# our benchmarks, each a subset's shards: the split read (None: all), the column naming the class
SUBSET_BENCHMARKS = {"train": ("test", "species"), "balanced": (None, "species"), "unseen": (None, "species"),
                     "lifestages": (None, "label")}
NAME_MODES = ("scientific", "common", "taxonomic", "scientific_common")
IMAGE_KEYS = ("jpg", "png", "gif", "webp")


def class_key(row: dict) -> tuple:
    """Rows with the same key are of the same class at every level and for every label column."""
    return (row.get("label"), row.get("scientific_name"), *(row.get(rank) for rank in LEVELS))


@dataclass
class Benchmark:
    """A lazy stream of images; `rows` (one per image) and `class_rows` (the first row of each
    class among all the benchmark's labelled rows: the classifiers are built from them) fill as
    the images are read."""
    images: Iterator[Image.Image]
    rows: list[dict]
    class_rows: list[dict]
    label_column: str
    name_mode: str = "scientific"
    skipped: dict = field(default_factory=dict)


def shard_images(shards: Path, split: str | None = None) -> tuple[Iterator[Image.Image], list[dict], list[dict]]:
    """A lazy pass over a shards folder in shard order: the images of `split` (all when None;
    Train's shards hold its train, val and test splits), decoded as they are consumed. The two
    lists fill as it runs: the rows of those images, and the first row of each class among all
    samples whatever their split (one per class, not per sample: Train has tens of millions)."""
    tars = [str(shards / name) for name in json.loads((shards / contracts.SHARD_SIZES).read_text())]
    rows, class_rows, seen = [], [], set()

    def images() -> Iterator[Image.Image]:
        if not tars:  # an empty subset has no shards (evaluate() then says so)
            return
        for sample in tqdm(wds.WebDataset(tars, shardshuffle=False), desc=f"reading {shards.name}", unit=" images",
                           mininterval=5):
            row = json.loads(sample["json"])
            key = class_key(row)
            if key not in seen:
                seen.add(key)
                class_rows.append(row)
            if split is None or row.get("split") == split:
                rows.append(row)
                data = next(sample[key] for key in IMAGE_KEYS if key in sample)
                yield Image.open(io.BytesIO(data)).convert("RGB")

    return images(), rows, class_rows


def subset_benchmark(shards: Path, name: str) -> Benchmark:
    """The subset `name` as a benchmark, from its shards folder."""
    split, column = SUBSET_BENCHMARKS[name]
    images, rows, class_rows = shard_images(shards, split)
    return Benchmark(images, rows, class_rows, column, "common" if name == "lifestages" else "scientific")


def read_metadata(path: Path, key_column: str, label_column: str) -> dict[str, tuple[str, int]]:
    """{key: (label, line)}; a missing column, an empty cell or a repeated key is an error naming
    the file and line."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in (key_column, label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} (columns: {reader.fieldnames}); set key_column and "
                             "label_column in config evaluate.external")
        labels: dict[str, tuple[str, int]] = {}
        for line, record in enumerate(reader, start=2):
            key, label = (record[key_column] or "").strip(), (record[label_column] or "").strip()
            if not key or not label:
                raise ValueError(f"{path}:{line}: empty {key_column if not key else label_column}")
            if key in labels:
                raise ValueError(f"{path}:{line}: {key!r} repeats line {labels[key][1]}")
            labels[key] = (label, line)
    return labels


def external_benchmark(spec: dict) -> Benchmark:
    """Images of a folder (in key order) or of webdataset tars (in tar order) with their labels.
    Every metadata row must have its image (else an error naming the line); a webdataset sample
    without a metadata row is skipped and counted."""
    metadata, images_at = Path(spec["metadata"]), Path(spec["images"])
    labels = read_metadata(metadata, spec["key_column"], spec["label_column"])
    every_row = [{"photo_id": key, "label": label} for key, (label, _) in sorted(labels.items())]
    class_rows = list({row["label"]: row for row in every_row}.values())
    benchmark = Benchmark(iter(()), [], class_rows, "label", spec["name_mode"], {"without_metadata": 0})
    if spec["format"] == "folder":
        absent = next(((key, line) for key, (_, line) in labels.items() if not (images_at / key).is_file()), None)
        if absent:
            raise FileNotFoundError(f"{metadata}:{absent[1]}: no image {images_at / absent[0]}")
        benchmark.images = folder_images(images_at, every_row, benchmark.rows)
    else:
        tars = sorted(str(p) for p in images_at.glob("*.tar"))
        if not tars:
            raise FileNotFoundError(f"{images_at}: no .tar shards (external benchmark format webdataset)")
        benchmark.images = tar_images(tars, labels, metadata, benchmark)
    return benchmark


def folder_images(folder: Path, every_row: list[dict], rows: list[dict]) -> Iterator[Image.Image]:
    for row in tqdm(every_row, desc=f"reading {folder.name}", unit=" images", mininterval=5):
        rows.append(row)
        with Image.open(folder / row["photo_id"]) as image:
            yield image.convert("RGB")


def tar_images(tars: list[str], labels: dict, metadata: Path, benchmark: Benchmark) -> Iterator[Image.Image]:
    for sample in tqdm(wds.WebDataset(tars, shardshuffle=False), desc="reading tars", unit=" images", mininterval=5):
        key = sample["__key__"]
        data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
        if key not in labels or data is None:
            benchmark.skipped["without_metadata"] += 1
            continue
        benchmark.rows.append({"photo_id": key, "label": labels[key][0]})
        yield Image.open(io.BytesIO(data)).convert("RGB")
    seen = {row["photo_id"] for row in benchmark.rows}
    unseen = sorted((line, key) for key, (_, line) in labels.items() if key not in seen)
    if unseen:
        raise ValueError(f"{metadata}:{unseen[0][0]}: no sample with key {unseen[0][1]!r} in the tars "
                         f"({len(unseen)} rows without an image)")


def lineage(row: dict, level: str) -> tuple:
    """The class of a row at a taxonomic level: its names from kingdom down to that level."""
    return tuple(row.get(rank) or "" for rank in LEVELS[:LEVELS.index(level) + 1])


def class_name(row: dict, level: str, mode: str) -> str:
    """The text a classifier gets for a row's class at a level, in a name mode. Common names exist
    for species only (the curated table has the taxon's own); other levels use the scientific name."""
    if level == "species":
        names = species_names(row)
    else:
        scientific = row.get(level) or ""
        names = {"scientific": scientific, "common": scientific,
                 "taxonomic": " ".join(name for name in lineage(row, level) if name)}
    scientific, common = names["scientific"], names["common"]
    return {**names, "scientific_common": scientific if common == scientific else
            f"{scientific} with common name {common}"}[mode]
