"""What evaluation reads: a subset's shards (one shard set: Train's test split, or a benchmark's
whole folder) with its classes from the subset's table, or an external benchmark (an image folder
or webdataset tars, with a metadata CSV naming each image's label); and the class names a
classifier is built from at each taxonomic level and name mode (Table 8).

A benchmark is a list of images in a fixed order with where each one's bytes are (a tar member's
offset and size, or a whole file), each image's class and one row per class: nothing is decoded
to find them (tar headers and the table are enough), and the images are decoded later, by
DataLoader workers (workflow_scripts.evaluate.zeroshot). Evaluation reads them, and so do the
image overlap check (external benchmarks' images), the exports and the monthly diff; each of our
benchmarks also has its names in text here.

An external benchmark's settings (config evaluate.external.<name>):
    format: folder | webdataset
    images: the folder (files named by key_column, relative to it) or the folder of .tar shards
    metadata: the CSV; key_column: the file path (folder) or the sample's __key__ (webdataset)
    label_column: the class names given to the classifier; name_mode: what kind of names they are
"""

from __future__ import annotations

import csv
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from workflow_scripts.common import contracts
from workflow_scripts.common.captions import species_names
from workflow_scripts.common.cli import StageError
from workflow_scripts.common.duck import quote
from workflow_scripts.common.taxonomy import ranks_down_to

# our benchmarks, each a subset's shards: the split read (None: the whole subset), the column naming
# the class
SUBSET_BENCHMARKS = {
    "train": ("test", "species"),
    "balanced": (None, "species"),
    "unseen": (None, "species"),
    "lifestages": (None, "label"),
    "genus_sampled": ("test", "species"),
}
# each subset's name in text (the paper's), and each of our benchmarks' short name in tables
SUBSET_NAMES = {
    "train": "BioTrove-Train",
    "balanced": "BioTrove-Balanced",
    "unseen": "BioTrove-Unseen",
    "lifestages": "LifeStages",
    "genus_sampled": "Genus-sampled",
}
ABBREVIATIONS = {
    "train": "BT-Test",
    "balanced": "BTB",
    "unseen": "BTU",
    "lifestages": "LS",
    "genus_sampled": "GS",
}
# each of our benchmarks' name in text: its subset's, and the split it reads
FULL_NAMES = {
    name: SUBSET_NAMES[name] + (f" ({split} split)" if split else "")
    for name, (split, _) in SUBSET_BENCHMARKS.items()
}
NAME_MODES = ("scientific", "common", "taxonomic", "scientific_common")
IMAGE_KEYS = ("jpg", "png", "gif", "webp")
WHOLE_FILE = -1  # a location's offset when the image is a file of its own


class BenchmarkError(StageError):
    """A benchmark whose files were not given; the message says which."""


def abbreviations(settings: dict) -> dict[str, str]:
    """Each benchmark's short name in the tables: ours, then an external one's configured
    abbreviation (`settings`: config.yaml's `evaluate` section)."""
    return ABBREVIATIONS | {
        name: spec.get("abbreviation", name) for name, spec in settings["external"].items()
    }


@dataclass
class Benchmark:
    """The images of a benchmark in the order they are encoded, and their classes."""

    keys: (
        np.ndarray | list
    )  # each image's id: its photo_id, or an external benchmark's metadata key
    paths: list[str]  # the files holding the images
    locations: np.ndarray  # per image (path index, offset, size); offset WHOLE_FILE: the whole file
    labels: np.ndarray  # per image, its class: an index into class_keys
    class_keys: list[str]  # the classifier's class names, sorted
    class_rows: list[dict]  # per class, a row with its taxonomy (names per level, class weights)
    name_mode: str = "scientific"
    skipped: dict = field(default_factory=dict)
    # Table 8 (subset benchmarks): per level, each image's class and a row per class
    lineage_classes: Callable[[str], tuple[np.ndarray, list[dict]]] | None = None


def tar_images(tars: list[Path]) -> tuple[list[str], np.ndarray]:
    """The image members of webdataset tars, in tar order: their keys and (tar index, offset,
    size)."""
    keys, locations = [], []
    for number, tar in enumerate(tars):
        with tarfile.open(tar) as archive:
            for member in archive:
                key, _, extension = member.name.partition(".")
                if extension in IMAGE_KEYS:
                    keys.append(key)
                    locations.append((number, member.offset_data, member.size))
    return keys, np.array(locations, dtype=np.int64).reshape(-1, 3)


def subset_benchmark(
    shards: Path, table: Path, name: str, shard_set: str | None = None
) -> Benchmark:
    """The subset `name` as a benchmark: the images of a shard set (by default the one evaluation
    reads: Train's test split) from the tar headers, the classes from its table (every row's:
    Train's classes are all its species)."""
    split, column = SUBSET_BENCHMARKS[name]
    folder = Path(contracts.shard_set(str(shards), shard_set or split or contracts.WHOLE))
    tars = [folder / tar for tar in json.loads((folder / contracts.SHARD_SIZES).read_text())]
    keys, locations = tar_images(tars)
    photo_ids = np.array([int(key) for key in keys], dtype=np.int64)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW subset AS SELECT * FROM read_parquet({quote(table)})")
    con.register("images", pa.table({"position": np.arange(len(photo_ids)), "photo_id": photo_ids}))
    absent = con.execute(
        "SELECT photo_id FROM images ANTI JOIN subset USING (photo_id) LIMIT 1"
    ).fetchone()
    if absent:
        raise ValueError(
            f"{folder}: photo {absent[0]} is not in {table}: rebuild the shards from this subset"
        )
    labels, class_rows = classes(con, [column])
    return Benchmark(
        photo_ids,
        [str(tar) for tar in tars],
        locations,
        labels,
        [row[column] for row in class_rows],
        class_rows,
        "common" if name == "lifestages" else "scientific",
        lineage_classes=lambda rank: classes(con, list(ranks_down_to(rank))),
    )


def classes(con: duckdb.DuckDBPyConnection, columns: list[str]) -> tuple[np.ndarray, list[dict]]:
    """Classes by the values of `columns` in the view `subset` (a missing name counts as ''): one
    row per class (its lowest photo_id's), in sorted order, and the class of each row of `images` in
    its order."""
    key = ", ".join(f"coalesce({quote_name(c)}, '') AS {quote_name(c)}" for c in columns)
    names = ", ".join(quote_name(c) for c in columns)
    rows = (
        con.execute(f"""SELECT * FROM subset WHERE photo_id IN (
                               SELECT min(photo_id) FROM (SELECT {key}, photo_id FROM subset)
                               GROUP BY {names})
                           """)
        .to_arrow_table()
        .to_pylist()
    )
    class_rows = sorted(rows, key=lambda row: tuple(row[c] or "" for c in columns))
    con.register(
        "class_ids",
        pa.table(
            {
                "class_id": np.arange(len(class_rows)),
                **{c: [row[c] or "" for row in class_rows] for c in columns},
            }
        ),
    )
    labels = con.execute(f"""SELECT c.class_id FROM images AS i
                             JOIN (SELECT photo_id, {key} FROM subset) AS s USING (photo_id)
                             JOIN class_ids AS c USING ({names})
                             ORDER BY i.position""").fetchnumpy()
    return labels["class_id"].astype(np.int64), class_rows


def quote_name(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def read_metadata(path: Path, key_column: str, label_column: str) -> dict[str, tuple[str, int]]:
    """{key: (label, line)}; a missing column, an empty cell or a repeated key is an error naming
    the file and line."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in (key_column, label_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path}: no column {missing[0]!r} (columns: {reader.fieldnames}); set key_column "
                f"and label_column in config evaluate.external"
            )
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
    class_keys = sorted({label for label, _ in labels.values()})
    skipped = {}
    if spec["format"] == "folder":
        keys = sorted(labels)
        absent = next(
            ((key, labels[key][1]) for key in keys if not (images_at / key).is_file()), None
        )
        if absent:
            raise FileNotFoundError(f"{metadata}:{absent[1]}: no image {images_at / absent[0]}")
        paths = [str(images_at / key) for key in keys]
        locations = np.array(
            [(number, WHOLE_FILE, 0) for number in range(len(keys))], np.int64
        ).reshape(-1, 3)
    else:
        paths = sorted(str(p) for p in images_at.glob("*.tar"))
        if not paths:
            raise FileNotFoundError(
                f"{images_at}: no .tar shards (external benchmark format webdataset)"
            )
        found, locations = tar_images([Path(p) for p in paths])
        kept = [number for number, key in enumerate(found) if key in labels]
        skipped["without_metadata"] = len(found) - len(kept)
        keys, locations = [found[number] for number in kept], locations[kept]
        present = set(keys)
        unseen = sorted((line, key) for key, (_, line) in labels.items() if key not in present)
        if unseen:
            raise ValueError(
                f"{metadata}:{unseen[0][0]}: no sample with key {unseen[0][1]!r} in the tars "
                f"({len(unseen)} rows without an image)"
            )
    class_ids = {label: number for number, label in enumerate(class_keys)}
    return Benchmark(
        keys,
        paths,
        locations,
        np.array([class_ids[labels[key][0]] for key in keys], np.int64),
        class_keys,
        [{"label": label} for label in class_keys],
        spec["name_mode"],
        skipped,
    )


def lineage(row: dict, level: str) -> tuple:
    """The class of a row at a taxonomic level: its names from kingdom down to that level."""
    return tuple(row.get(rank) or "" for rank in ranks_down_to(level))


def class_name(row: dict, level: str, mode: str) -> str:
    """The text a classifier gets for a row's class at a level, in a name mode. Common names exist
    for species only (the curated table has the taxon's own); other levels use the scientific
    name."""
    if level == "species":
        names = species_names(row)
    else:
        scientific = row.get(level) or ""
        names = {
            "scientific": scientific,
            "common": scientific,
            "taxonomic": " ".join(name for name in lineage(row, level) if name),
        }
    scientific, common = names["scientific"], names["common"]
    return {
        **names,
        "scientific_common": scientific
        if common == scientific
        else f"{scientific} with common name {common}",
    }[mode]


def benchmark_inputs(
    name: str, subsets: dict[str, tuple[Path, Path]], settings: dict
) -> list[Path]:
    """What a benchmark is read from: a subset's shards and table (`subsets`: {subset: (shards
    folder, table)}), or an external one's metadata."""
    if name in SUBSET_BENCHMARKS:
        return [Path(path) for path in subset_files(name, subsets)]
    return [Path(settings["external"][name]["metadata"])]


def subset_files(name: str, subsets: dict[str, tuple[Path, Path]]) -> tuple[Path, Path]:
    """A subset benchmark's shards folder and table, from those given."""
    if name not in subsets:
        raise BenchmarkError(
            f"benchmark {name}: its shards and table were not given (--shards, --tables); "
            f"given: {', '.join(subsets) or 'none'}"
        )
    shards, table = subsets[name]
    return Path(shards), Path(table)


def open_benchmark(name: str, subsets: dict[str, tuple[Path, Path]], settings: dict) -> Benchmark:
    """A benchmark by name: one of `subsets` ({subset: (shards folder, table)}), or an external one
    of `settings` (config.yaml's `evaluate` section)."""
    if name in SUBSET_BENCHMARKS:
        return subset_benchmark(*subset_files(name, subsets), name)
    return external_benchmark(settings["external"][name])
