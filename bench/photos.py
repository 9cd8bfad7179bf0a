"""The image benchmarks' input: a folder laid out like the bucket with `images` photos of 400
species and a Train-like subset table naming them by their public URLs (with their width and
height, as photos.csv gives them). The photos are real JPEGs of iNaturalist's medium size (500 x
375: the download checks decode them), BASES renders of the sample's generator made unique by a
JPEG comment (the photo_id, padded to a log-normal size around 55 KB where that is larger than the
render's 80-110 KB: iNaturalist's medium JPEGs are 30-150 KB)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import duckdb
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workflow_scripts.sample import images as sample_images  # noqa: E402

SPECIES = 400
BASES = 40  # distinct renders (rendering 500 x 375 takes ~20 ms each)
WIDTH, HEIGHT = 500, 375
# the subset's URLs start here; rewrite it to where the bucket folder is served
ORIGIN = "https://example.org"


def commented(jpeg: bytes, text: bytes, size: int) -> bytes:
    """The JPEG with COM segments after its start marker holding `text` and padding up to about
    `size` bytes (a segment holds at most 65,533)."""
    body, segments = text + b" " * max(0, size - len(jpeg) - len(text)), []
    for start in range(0, len(body), 65_533):
        chunk = body[start : start + 65_533]
        segments.append(b"\xff\xfe" + struct.pack(">H", len(chunk) + 2) + chunk)
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def prepare(workdir: Path, images: int) -> Path:
    """workdir/bucket/ and workdir/train.parquet (made once per workdir); returns the table."""
    subset = workdir / "train.parquet"
    if subset.exists():
        return subset
    bases = [
        sample_images.encode(
            sample_images.render(sample_images.species_signature(n % 37, n), WIDTH, HEIGHT, n),
            "JPEG",
        )
        for n in range(BASES)
    ]
    rng = np.random.RandomState(0)
    sizes = np.clip(rng.lognormal(np.log(55_000), 0.4, images), 8_000, 400_000).astype(int)
    for photo_id, size in enumerate(sizes, start=1):
        folder = workdir / "bucket" / "photos" / str(photo_id)
        folder.mkdir(parents=True, exist_ok=True)
        base = bases[photo_id % BASES]
        (folder / "medium.jpg").write_bytes(commented(base, b"photo %d" % photo_id, int(size)))
    temporary = subset.with_name(subset.name + ".tmp")
    duckdb.sql(f"""COPY (SELECT range + 1 AS photo_id,
                               '{ORIGIN}/photos/' || (range + 1) || '/medium.jpg' AS photo_url,
                               {WIDTH} AS width, {HEIGHT} AS height,
                               'Animalia' AS kingdom, 'Arthropoda' AS phylum, 'Insecta' AS class,
                               'Lepidoptera' AS "order", 'Nymphalidae' AS family,
                               'Genus' || (range % 37) AS genus,
                               'Genus' || (range % 37) || ' species' || (range % {SPECIES})
                                   AS species,
                               species AS scientific_name, 'common ' || species AS common_name,
                               'Animalia Arthropoda Insecta Lepidoptera Nymphalidae ' || species
                                   AS taxonomic_name,
                               'CC-BY' AS license, 'train' AS split
                        FROM range({images})) TO '{temporary}' (FORMAT parquet)""")
    temporary.rename(subset)
    return subset
