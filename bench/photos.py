"""The image benchmarks' input: a folder laid out like the bucket with `images` photos of 400
species (random bytes behind a JPEG signature, log-normal sizes around 55 KB: iNaturalist's medium
JPEGs are 30-150 KB) and a Train-like subset table naming them by their public URLs."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

SPECIES = 400
# the subset's URLs start here; rewrite it to where the bucket folder is served
ORIGIN = "https://example.org"


def prepare(workdir: Path, images: int) -> Path:
    """workdir/bucket/ and workdir/train.parquet (made once per workdir); returns the table."""
    subset = workdir / "train.parquet"
    if subset.exists():
        return subset
    rng = np.random.RandomState(0)
    sizes = np.clip(rng.lognormal(np.log(55_000), 0.4, images), 8_000, 400_000).astype(int)
    for photo_id, size in enumerate(sizes, start=1):
        folder = workdir / "bucket" / "photos" / str(photo_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "medium.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(int(size) - 4))
    temporary = subset.with_name(subset.name + ".tmp")
    duckdb.sql(f"""COPY (SELECT range + 1 AS photo_id,
                               '{ORIGIN}/photos/' || (range + 1) || '/medium.jpg' AS photo_url,
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
