"""Near-duplicate images by perceptual hash (workflow_scripts.images.perceptual): the same picture
uploaded again re-encoded, resized, brightened or mirrored. An evaluation image (Balanced, Unseen,
LifeStages, Train's test split, the configured external benchmarks) with a copy in Train's train or
val split within `overlap.near_duplicate_threshold` bits is an overlap: each such pair is listed and
the Train copy left out of Train's shards; groups of near-duplicates inside Train (within a species)
are listed and kept.
Hashes below `overlap.min_quality` (flat images, which match anything flat) are not matched.

The search never compares all pairs: faiss's multi-index hash (IndexBinaryMultiHash) cuts the 256
bits into substrings and looks each one up with up to a few bits flipped, so only candidates that
share a nearly equal substring are compared (index_shape: chosen so that no pair within the
threshold is missed). The index holds Train's hashes, built in blocks that bound its memory; the
queries are the evaluation images' hashes and their mirror images' (bench/near_dup.py: indexing
the larger side probes fewer buckets in all; at threshold 31 as fast as all pairs at 1 M x 100 k,
1.3x faster at 4 M, the gain growing with Train).
"""

from __future__ import annotations

import duckdb
import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from workflow_scripts.common import contracts
from workflow_scripts.common.duck import quote

BITS = 256
INDEX_BLOCK = (
    1 << 24
)  # hashes per index block: 16.8 M entries in each of up to 11 hash tables, ~5 GB
QUERY_BATCH = 1 << 20


def index_shape(threshold: int) -> tuple[int, int, int]:
    """(substrings, bits per substring, bits flipped per lookup) for IndexBinaryMultiHash such that
    every pair within `threshold` is found: cut into k substrings, a pair that differs in at most
    `threshold` bits differs in at most threshold // k bits in one of them (pigeonhole), so
    k * (flips + 1) > threshold suffices. Flips grow with the threshold to keep k at most 11 (23-bit
    substrings: sparse buckets at 40 M hashes)."""
    flips = threshold // 11
    substrings = threshold // (flips + 1) + 1
    return substrings, min(64, BITS // substrings), flips


def within(
    index_codes: np.ndarray,
    query_codes: np.ndarray,
    threshold: int,
    index_block: int = INDEX_BLOCK,
    query_batch: int = QUERY_BATCH,
) -> tuple[np.ndarray, ...]:
    """Every (query row, index row, distance) with Hamming distance at most `threshold` between
    rows of two uint8 arrays of 32-byte codes, sorted; the index is built `index_block` rows at a
    time and searched `query_batch` queries at a time (memory)."""
    substrings, bits, flips = index_shape(threshold)
    found = [(np.empty(0, np.int64),) * 3]
    blocks = range(0, len(index_codes), index_block)
    batches = range(0, len(query_codes), query_batch)
    with tqdm(
        total=len(blocks) * len(query_codes), desc="near-duplicate search", unit="hash"
    ) as progress:
        for block in blocks:
            index = faiss.IndexBinaryMultiHash(BITS, substrings, bits)
            index.nflip = flips
            index.add(np.ascontiguousarray(index_codes[block : block + index_block]))
            for batch in batches:
                queries = np.ascontiguousarray(query_codes[batch : batch + query_batch])
                limits, distances, rows = index.range_search(
                    queries, threshold + 1
                )  # faiss: distance < radius
                matches = np.diff(limits).astype(np.int64)
                found.append(
                    (batch + np.repeat(np.arange(len(queries)), matches), block + rows, distances)
                )
                progress.update(len(queries))
    queries, rows, distances = (np.concatenate(column).astype(np.int64) for column in zip(*found))
    order = np.lexsort((distances, rows, queries))
    return queries[order], rows[order], distances[order]


def codes(column: pa.ChunkedArray) -> np.ndarray:
    """A column of 32-byte hashes as an (n, 32) uint8 array."""
    return np.frombuffer(b"".join(column.to_pylist()), np.uint8).reshape(-1, BITS // 8)


def load_hashes(con: duckdb.DuckDBPyConnection, hashes: dict[str, str], min_quality: int) -> dict:
    """The table `hashed` (benchmark, photo_id as text, split, species, hash, mirrored) of every
    image with a hash of at least `min_quality`, Train's split and species from its subset view;
    returns what is left out, per subset: `not_decodable` and `low_quality`."""
    parts = []
    for name, path in hashes.items():
        source, split, species = f"read_parquet({quote(path)})", "NULL", "NULL"
        if name == "train":
            source = (
                f"(SELECT h.*, t.split, t.taxonomic_name FROM {source} AS h JOIN train AS t "
                f"USING (photo_id))"
            )
            split, species = "split", "coalesce(taxonomic_name, '')"
        parts.append(
            f"SELECT {quote(name)} AS benchmark, photo_id::VARCHAR AS photo_id, {split}::VARCHAR "
            f"AS split, {species}::VARCHAR AS species, hash, mirrored, quality FROM {source}"
        )
    con.execute(f"CREATE TABLE all_hashes AS {' UNION ALL '.join(parts)}")
    con.execute(
        f"CREATE TABLE hashed AS SELECT * EXCLUDE (quality) FROM all_hashes WHERE quality >= "
        f"{min_quality} ORDER BY benchmark, photo_id"
    )
    left_out = {}
    for benchmark, undecodable, low in con.execute(
        f"""SELECT benchmark, count(*) FILTER (WHERE hash IS NULL),
                   count(*) FILTER (WHERE quality < {min_quality})
                FROM all_hashes GROUP BY 1 ORDER BY 1"""
    ).fetchall():
        left_out[benchmark] = {"not_decodable": undecodable, "low_quality": low}
    return left_out


def overlapping_pairs(con: duckdb.DuckDBPyConnection, threshold: int) -> list[dict]:
    """Pairs of a Train train/val image and an evaluation image within `threshold` (the evaluation
    image or its mirror image), each at its smallest distance, ordered by benchmark and photo."""
    train_test = quote(contracts.TRAIN_TEST)
    evaluation = con.execute(f"""SELECT CASE WHEN benchmark = 'train' THEN {train_test}
                                             ELSE benchmark END,
                                        photo_id, hash, mirrored FROM hashed
                                 WHERE benchmark != 'train' OR split = 'test'
                                 ORDER BY 1, 2""").to_arrow_table()
    train = con.execute(
        "SELECT photo_id, hash FROM hashed WHERE benchmark = 'train' AND split != 'test' "
        "ORDER BY photo_id"
    ).to_arrow_table()
    queries = np.concatenate([codes(evaluation.column(2)), codes(evaluation.column(3))])
    images, rows, distances = within(codes(train.column(1)), queries, threshold)
    images %= max(evaluation.num_rows, 1)
    con.register(
        "found",
        pa.table(
            {
                "train": train.column(0).take(rows),
                "benchmark": evaluation.column(0).take(images),
                "photo_id": evaluation.column(1).take(images),
                "distance": distances,
            }
        ),
    )
    return [
        dict(zip(("train", "benchmark", "photo_id", "distance"), row))
        for row in con.execute(
            """SELECT train, benchmark, photo_id, min(distance)::INTEGER FROM found GROUP BY ALL
           ORDER BY benchmark, photo_id, train"""
        ).fetchall()
    ]


def groups_inside_train(con: duckdb.DuckDBPyConnection, threshold: int) -> list[list[str]]:
    """Groups of Train images (any split) linked by near-duplicate pairs, each sorted, by first
    member. Searched species by species: a re-upload keeps its organism's label, and within one
    species (at most subsets.max_images) all pairs by faiss's SIMD scan cost seconds, where Train
    against itself through the index would cost days at full size (bench/near_dup.py)."""
    train = con.execute(
        "SELECT photo_id, hash, mirrored, species FROM hashed WHERE benchmark = 'train' "
        "ORDER BY species, photo_id"
    ).to_arrow_table()
    hashes, mirrored = codes(train.column(1)), codes(train.column(2))
    species = pc.dictionary_encode(train.column(3)).combine_chunks().indices.to_numpy()
    starts = np.flatnonzero(np.diff(species, prepend=-1))
    linked = [(np.empty(0, np.int64),) * 2]
    for start, end in tqdm(
        list(zip(starts, [*starts[1:], len(species)])),
        desc="near duplicates inside Train",
        unit="species",
    ):
        flat = faiss.IndexBinaryFlat(BITS)
        flat.add(hashes[start:end])
        limits, _, rows = flat.range_search(
            np.concatenate([hashes[start:end], mirrored[start:end]]), threshold + 1
        )
        queries = np.repeat(np.arange(2 * (end - start)), np.diff(limits).astype(np.int64)) % (
            end - start
        )
        keep = queries != rows
        linked.append((start + queries[keep], start + rows[keep].astype(np.int64)))
    queries, rows = (np.concatenate(column) for column in zip(*linked))
    graph = coo_matrix((np.ones(len(queries)), (queries, rows)), shape=(len(species), len(species)))
    _, component = connected_components(graph, directed=False)
    ids = train.column(0).to_pylist()
    members: dict[int, list[str]] = {}
    for row in np.unique(np.concatenate([queries, rows])):
        members.setdefault(component[row], []).append(ids[row])
    return sorted(sorted(group, key=int) for group in members.values())


def near_duplicates(con: duckdb.DuckDBPyConnection, hashes: dict[str, str], settings: dict) -> dict:
    """The near-duplicate check over `hashes` ({subset or external benchmark: its hashes' Parquet});
    `con` has the view `train` (Train's table). `settings`: config.yaml's `overlap` section."""
    threshold = settings["near_duplicate_threshold"]
    left_out = load_hashes(con, hashes, settings["min_quality"])
    pairs = overlapping_pairs(con, threshold)
    for pair in pairs:
        pair["train"] = int(pair["train"])
        if pair["benchmark"] in contracts.SUBSETS or pair["benchmark"] == contracts.TRAIN_TEST:
            pair["photo_id"] = int(pair["photo_id"])
    groups = [[int(photo) for photo in group] for group in groups_inside_train(con, threshold)]
    return {
        "near_duplicates": pairs,
        "threshold": threshold,
        "left_out": left_out,
        "inside_train": {
            "groups": len(groups),
            "photos": sum(map(len, groups)),
            "photo_ids": groups,
        },
    }
