"""The near-duplicate check's costs: hashing images (decode + PDQ of the image and of its mirror
image, as the download jobs do) per core, and the index search at full-size proportions.

    python bench/near_dup.py [--images 300] [--train 1000000] [--benchmark 100000]
                             [--originals 20] [--recall-only]

Hashing: `images` photo-like JPEGs of iNaturalist's medium size (500 x 375, quality 85; the
sample's renderer), hashed in one process: images/s per core, and what decoding alone takes.

Search: `train` Train hashes (indexed) against `benchmark` benchmark hashes and their mirror
images' (the queries), as the check does, at the default threshold, through the multi-index hash,
and all pairs (faiss's flat binary index, timed on a slice and scaled) for comparison. The
codes are random balanced 256-bit codes (a PDQ hash has 128 ones by construction), with 1,000
planted copies 0-31 bits away, all of which must be found. The groups inside Train are timed
species by species, as the check searches them, on a Train of `train` hashes shaped like
BioTrove-Train; then `search 1M x 100k: X s (all pairs: Y s)` (--recall-only skips all of this).

Recall (bench/copy_detection.py): which edited copies (EXIF-oriented, rotated, cropped, bordered,
screenshots, and the edits found today; the copy in Train and in the evaluation set) each of five
hashing methods finds, on `originals` generated photos and on the real photos that ship inside
installed packages; the false matches among those real photos; each method's hashing cost per
image on either side. The last line, for the method docs/images.md chooses:
`recall (crop>=80%, border<=10%, rotation, exif): X.XX, cost: Y ms/image`.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from functools import partial
from pathlib import Path

import duckdb
import faiss
import numpy as np
import pyarrow as pa
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import copy_detection  # noqa: E402
from workflow_scripts.common.config import settings  # noqa: E402
from workflow_scripts.images.near_duplicates import groups_inside, within  # noqa: E402
from workflow_scripts.images.perceptual import pdq  # noqa: E402
from workflow_scripts.sample import images as sample_images  # noqa: E402

PLANTED = 1_000


def photos(count: int) -> list[bytes]:
    rendered = []
    for number in range(count):
        signature = sample_images.species_signature(number % 50, number)
        rendered.append(
            sample_images.encode(sample_images.render(signature, 500, 375, number), "JPEG")
        )
    return rendered


def hashing(count: int) -> None:
    data = photos(count)
    started = time.perf_counter()
    for image in data:
        Image.open(io.BytesIO(image)).convert("RGB").load()
    decoding = time.perf_counter() - started
    started = time.perf_counter()
    for image in data:
        pdq(image)
    seconds = time.perf_counter() - started
    print(
        f"hashing: {count / seconds:.0f} images/s per core ({1000 * seconds / count:.2f} ms each, "
        f"decoding {1000 * decoding / count:.2f} ms of it; "
        f"{sum(map(len, data)) / count / 1000:.0f} KB JPEGs, 500 x 375)"
    )


def codes(count: int, rng: np.random.Generator) -> np.ndarray:
    """Random 256-bit codes with 128 ones each, as PDQ's median threshold makes them."""
    bits = np.zeros((count, 256), np.uint8)
    bits[:, :128] = 1
    return np.packbits(rng.permuted(bits, axis=1), axis=1)


def search(train_size: int, benchmark_size: int, threshold: int) -> float:
    """Train's hashes indexed, the benchmark's and their mirror images' the queries (as the check
    does), with PLANTED benchmark images copied into Train 0-threshold bits away."""
    rng = np.random.default_rng(0)
    queries = np.concatenate([codes(benchmark_size, rng), codes(benchmark_size, rng)])
    train = codes(train_size, rng)
    planted = rng.choice(train_size, PLANTED, replace=False)
    sources = rng.choice(len(queries), PLANTED, replace=False)
    bits = np.unpackbits(queries[sources], axis=1)
    for row, flips in enumerate(rng.integers(0, threshold + 1, PLANTED)):
        bits[row, rng.choice(256, flips, replace=False)] ^= 1
    train[planted] = np.packbits(bits, axis=1)

    started = time.perf_counter()
    images, rows, _ = within(train, queries, threshold)
    seconds = time.perf_counter() - started
    found = set(zip(images.tolist(), rows.tolist()))
    missed = sum((q, r) not in found for q, r in zip(sources.tolist(), planted.tolist()))
    print(
        f"search {train_size:,} x {benchmark_size:,} ({len(queries):,} queries with mirrors): "
        f"{seconds:.1f} s, {len(found):,} pairs, planted copies missed: {missed} of {PLANTED}"
    )
    if missed:
        raise SystemExit("the index missed pairs within the threshold")
    return seconds


def inside_train(train_size: int, threshold: int) -> None:
    """The groups inside Train, species by species, on a Train of BioTrove-Train's shape: 1,200
    images per species on average (40 M over 33 k), log-normal sizes capped at 50,000."""
    rng = np.random.default_rng(2)
    species = max(1, train_size // 1200)
    weights = rng.lognormal(0, 1.5, species)
    sizes = np.minimum(
        np.maximum(1, (weights / weights.sum() * train_size).astype(np.int64)), 50_000
    )
    labels = np.repeat(np.arange(species), sizes)
    con = duckdb.connect()
    con.register(
        "train",
        pa.table(
            {
                "benchmark": ["train"] * len(labels),
                "photo_id": np.arange(len(labels)).astype(str),
                "species": labels.astype(str),
                "hash": list(map(bytes, codes(len(labels), rng))),
                "mirrored": list(map(bytes, codes(len(labels), rng))),
            }
        ),
    )
    con.execute("CREATE TABLE hashed AS SELECT * FROM train")
    started = time.perf_counter()
    groups_inside(con, "train", threshold)
    print(
        f"groups inside Train, {len(labels):,} hashes in {species:,} species (largest "
        f"{sizes.max():,}; sum of squares {int((sizes.astype(float) ** 2).sum()):.2e}): "
        f"{time.perf_counter() - started:.1f} s"
    )


def all_pairs(train_size: int, benchmark_size: int, threshold: int) -> float:
    rng = np.random.default_rng(1)
    flat = faiss.IndexBinaryFlat(256)
    flat.add(codes(2 * benchmark_size, rng))
    sample = 20_000
    started = time.perf_counter()
    flat.range_search(codes(sample, rng), threshold + 1)
    return (time.perf_counter() - started) * train_size / sample


def recall(sets: dict[str, list[bytes]], threshold: int) -> dict[str, dict]:
    """The recall table per kind of edit and method on each set of originals; returns it."""
    methods = copy_detection.METHODS
    tables = {}
    for name, originals in sets.items():
        table = copy_detection.recall_table(originals, threshold)
        tables[name] = table
        print(f"\nrecall on {name} ({len(originals)} originals, each edit with the copy in Train")
        print("and in the evaluation set):")
        print(f"| kind | {' | '.join(methods)} |\n|---|{'---:|' * len(methods)}")
        for kind, row in table.items():
            cells = [f"{sum(row[m]) / len(row[m]):.2f}" for m in methods]
            print(f"| {kind} ({len(row[methods[0]])}) | {' | '.join(cells)} |")
    return tables


def costs(images: list[bytes]) -> dict[str, tuple[float, float]]:
    """Milliseconds per image of each method's hashing: a Train image's, an evaluation image's."""
    found = {}
    for level, method in enumerate(copy_detection.METHODS):
        train_side = partial(copy_detection.index_parts, level=min(level, 2))
        evaluation_side = partial(copy_detection.query_parts, level=level)
        found[method] = (
            copy_detection.cost_ms(images, train_side),
            copy_detection.cost_ms(images, evaluation_side),
        )
    print("\nhashing per image (ms; decoding included): Train side / evaluation side")
    for method, (train, evaluation) in found.items():
        print(f"  {method}: {train:.2f} / {evaluation:.2f}")
    return found


def false_matches(photos: dict[str, bytes], threshold: int) -> None:
    """Distinct real photos under each method: pairs within the threshold, the nearest pair, and
    the stereo pair (one scene from two viewpoints a few cm apart: a burst-like look-alike)."""
    print(
        f"\nfalse matches among {len(photos)} real photos ({len(photos) * (len(photos) - 1)} "
        "ordered pairs):"
    )
    for level, method in enumerate(copy_detection.METHODS):
        pairs = copy_detection.false_matches(photos, level)
        stereo = min(d for a, b, d in pairs if {a, b} == {"motorcycle_left", "motorcycle_right"})
        close = [(a, b, d) for a, b, d in pairs if d <= threshold]
        print(
            f"  {method}: {len(close)} within {threshold}"
            f"{' (' + ', '.join(f'{a}~{b} {d}' for a, b, d in close[:4]) + ')' if close else ''}; "
            f"nearest {pairs[0][0]}~{pairs[0][1]} {pairs[0][2]} bits; stereo pair {stereo} bits"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--train", type=int, default=1_000_000)
    parser.add_argument("--benchmark", type=int, default=100_000)
    parser.add_argument(
        "--originals", type=int, default=20, help="generated photos edited for the recall table"
    )
    parser.add_argument(
        "--recall-only", action="store_true", help="skip the hashing rate and the search"
    )
    args = parser.parse_args()
    threshold = settings("overlap")["near_duplicate_threshold"]
    print(f"threshold {threshold}, {faiss.omp_get_max_threads()} threads")
    if not args.recall_only:
        hashing(args.images)
        seconds = search(args.train, args.benchmark, threshold)
        search(args.train, args.benchmark * 3 // 2, threshold)
        inside_train(args.train, threshold)
        flat = all_pairs(args.train, args.benchmark, threshold)
        print(
            f"search {args.train // 1_000_000}M x {args.benchmark // 1000}k: {seconds:.1f} s (all "
            f"pairs: {flat:.0f} s)"
        )
    real = copy_detection.real_photos()
    tables = recall(
        {"photo-like 500 x 375": photos(args.originals), "real photos": list(real.values())},
        threshold,
    )
    false_matches(real, threshold)
    spent = costs(photos(args.images))
    chosen = copy_detection.CHOSEN
    found = [hit for kind in copy_detection.KINDS for hit in tables["real photos"][kind][chosen]]
    print(
        f"recall ({', '.join(copy_detection.KINDS)}): {sum(found) / len(found):.2f}, cost: "
        f"{spent[chosen][0]:.1f} ms/image"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
