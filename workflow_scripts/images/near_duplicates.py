"""Near-duplicate images by perceptual hash (workflow_scripts.images.perceptual): the same picture
uploaded again re-encoded, resized, brightened or mirrored. Each subset with splits (Train,
genus_sampled) has a training side, its train and val splits; an evaluation image
(evaluation_condition: Balanced, Unseen, LifeStages, the test splits, the configured external
benchmarks, and for Train every genus_sampled image) with a copy on a training side within
`overlap.near_duplicate_threshold` bits is an overlap: each such pair is listed and the copy left
out of its subset's shards. Groups of near duplicates inside each of those subsets (within a
species) are listed and kept, and so are pairs between two evaluation sets (two benchmarks that
share a picture: not a leak into training).
Hashes below `overlap.min_quality` (flat images, which match anything flat) are not matched.

The search never compares all pairs: faiss's multi-index hash (IndexBinaryMultiHash) cuts the 256
bits into substrings and looks each one up with up to a few bits flipped, so only candidates that
share a nearly equal substring are compared (index_shape: chosen so that no pair within the
threshold is missed). The index holds a training side's hashes, built in blocks that bound its
memory; the queries are the evaluation images' hashes and their mirror images' (bench/near_dup.py:
indexing the larger side probes fewer buckets in all; at threshold 31 as fast as all pairs at 1 M x
100 k, 1.3x faster at 4 M, the gain growing with Train).
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
    image with a hash of at least `min_quality`, the split and species of a subset with splits
    (Train, genus_sampled) from its subset view; returns what is left out, per subset:
    `not_decodable` and `low_quality`."""
    parts = []
    for name, path in hashes.items():
        source, split, species = f"read_parquet({quote(path)})", "NULL", "NULL"
        if name in contracts.SPLIT_SUBSETS:
            source = (
                f"(SELECT h.*, t.split, t.taxonomic_name FROM {source} AS h JOIN {name} AS t "
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


def evaluation_condition(side: str | None = None) -> str:
    """SQL over a table's `benchmark` (a subset or external benchmark) and `split`: the evaluation
    images of a training side, `side`'s train and val splits (None: the evaluation sets
    themselves). Every image of a subset without splits or of an external benchmark, the test split
    of Train and of genus_sampled, and for Train's side every genus_sampled image (its genera must
    not be in Train at all)."""
    splits = ", ".join(map(quote, contracts.SPLIT_SUBSETS))
    condition = f"(benchmark NOT IN ({splits}) OR split = 'test')"
    if side == "train":
        condition += f" OR benchmark = {quote(contracts.GENUS_SAMPLED)}"
    return condition


# The evaluation set an evaluation image is named by: Train's test split as `train_test`
EVALUATION_SET = (
    f"CASE WHEN benchmark = 'train' AND split = 'test' THEN {quote(contracts.TRAIN_TEST)} "
    "ELSE benchmark END"
)


def evaluation_images(con: duckdb.DuckDBPyConnection, side: str | None = None) -> pa.Table:
    """`hashed`'s evaluation images for `side` (evaluation_condition), as (benchmark: the set
    that names them, photo_id, hash, mirrored), by set and photo."""
    return con.execute(
        f"""SELECT {EVALUATION_SET} AS benchmark, photo_id, hash, mirrored FROM hashed
            WHERE {evaluation_condition(side)} ORDER BY 1, 2"""
    ).to_arrow_table()


def pairs_within(
    con: duckdb.DuckDBPyConnection, indexed: pa.Table, queries: pa.Table, threshold: int
) -> pa.Table:
    """(indexed, query, distance): row numbers of each indexed hash within `threshold` of a
    query's hash or of its mirror image's, each pair once at its smallest distance. `indexed` has
    a column `hash`, `queries` columns `hash` and `mirrored`."""
    queried = np.concatenate([codes(queries.column("hash")), codes(queries.column("mirrored"))])
    images, rows, distances = within(codes(indexed.column("hash")), queried, threshold)
    con.register(
        "matches",
        pa.table(
            {"indexed": rows, "query": images % max(queries.num_rows, 1), "distance": distances}
        ),
    )
    return con.execute(
        """SELECT indexed, query, min(distance)::INTEGER AS distance FROM matches GROUP BY ALL
           ORDER BY ALL"""
    ).to_arrow_table()


def overlapping_pairs(con: duckdb.DuckDBPyConnection, side: str, threshold: int) -> list[dict]:
    """Pairs of a training image of the subset `side` (its train and val splits) and one of its
    evaluation images within `threshold` (the evaluation image or its mirror image), each at its
    smallest distance, ordered by evaluation set and photo."""
    evaluation = evaluation_images(con, side)
    training = con.execute(
        f"""SELECT photo_id, hash FROM hashed WHERE benchmark = {quote(side)} AND split != 'test'
            ORDER BY photo_id"""
    ).to_arrow_table()
    found = pairs_within(con, training, evaluation, threshold)
    pairs = pa.table(
        {
            "train": training.column("photo_id").take(found.column("indexed")),
            "benchmark": evaluation.column("benchmark").take(found.column("query")),
            "photo_id": evaluation.column("photo_id").take(found.column("query")),
            "distance": found.column("distance"),
        }
    )
    con.register("pairs", pairs)
    return [
        {"subset": side, **dict(zip(pairs.column_names, row))}
        for row in con.execute("SELECT * FROM pairs ORDER BY benchmark, photo_id, train").fetchall()
    ]


def pairs_between_evaluation_sets(con: duckdb.DuckDBPyConnection, threshold: int) -> list[dict]:
    """Pairs of images of two different evaluation sets within `threshold` (either mirrored), each
    pair once, the first by (set, photo), ordered so: not a leak into training, but two
    benchmarks that share pictures."""
    evaluation = evaluation_images(con)
    found = pairs_within(con, evaluation, evaluation, threshold)
    sets, ids = evaluation.column("benchmark"), evaluation.column("photo_id")
    pairs = pa.table(
        {
            "benchmark": sets.take(found.column("indexed")),
            "photo_id": ids.take(found.column("indexed")),
            "other": sets.take(found.column("query")),
            "other_photo_id": ids.take(found.column("query")),
            "distance": found.column("distance"),
        }
    )
    con.register("pairs", pairs)
    return [
        dict(zip(pairs.column_names, row))
        for row in con.execute(
            """SELECT benchmark, photo_id, other, other_photo_id, min(distance)::INTEGER
               FROM pairs WHERE (benchmark, photo_id) < (other, other_photo_id)
                 AND benchmark != other
               GROUP BY ALL ORDER BY ALL"""
        ).fetchall()
    ]


def groups_inside(con: duckdb.DuckDBPyConnection, subset: str, threshold: int) -> list[list[str]]:
    """Groups of a subset's images (any split) linked by near-duplicate pairs, each sorted, by
    first member. Searched species by species: a re-upload keeps its organism's label, and within
    one species (at most subsets.max_images) all pairs by faiss's SIMD scan cost seconds, where
    Train against itself through the index would cost days at full size (bench/near_dup.py)."""
    images = con.execute(
        f"""SELECT photo_id, hash, mirrored, species FROM hashed WHERE benchmark = {quote(subset)}
            ORDER BY species, photo_id"""
    ).to_arrow_table()
    hashes, mirrored = codes(images.column(1)), codes(images.column(2))
    species = pc.dictionary_encode(images.column(3)).combine_chunks().indices.to_numpy()
    starts = np.flatnonzero(np.diff(species, prepend=-1))
    linked = [(np.empty(0, np.int64),) * 2]
    for start, end in tqdm(
        list(zip(starts, [*starts[1:], len(species)])),
        desc=f"near duplicates inside {subset}",
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
    ids = images.column(0).to_pylist()
    members: dict[int, list[str]] = {}
    for row in np.unique(np.concatenate([queries, rows])):
        members.setdefault(component[row], []).append(ids[row])
    return sorted(sorted(group, key=int) for group in members.values())


def photo_id(evaluation_set: str, photo: str) -> int | str:
    """A photo id as its set names it: a number in a subset, a key in an external benchmark."""
    in_subset = evaluation_set in contracts.SUBSETS or evaluation_set == contracts.TRAIN_TEST
    return int(photo) if in_subset else photo


def near_duplicates(con: duckdb.DuckDBPyConnection, hashes: dict[str, str], settings: dict) -> dict:
    """The near-duplicate check over `hashes` ({subset or external benchmark: its hashes' Parquet});
    `con` has a view per subset with splits (Train, genus_sampled) that `hashes` has. Each one's
    training side is checked against its evaluation images, and its groups listed
    (`inside_<subset>`); pairs between evaluation sets are listed too. `settings`: config.yaml's
    `overlap` section."""
    threshold = settings["near_duplicate_threshold"]
    left_out = load_hashes(con, hashes, settings["min_quality"])
    sides = [subset for subset in contracts.SPLIT_SUBSETS if subset in hashes]
    pairs = [pair for side in sides for pair in overlapping_pairs(con, side, threshold)]
    for pair in pairs:
        pair["train"] = int(pair["train"])
        pair["photo_id"] = photo_id(pair["benchmark"], pair["photo_id"])
    between = pairs_between_evaluation_sets(con, threshold)
    for pair in between:
        pair["photo_id"] = photo_id(pair["benchmark"], pair["photo_id"])
        pair["other_photo_id"] = photo_id(pair["other"], pair["other_photo_id"])
    found = {
        "near_duplicates": pairs,
        "threshold": threshold,
        "left_out": left_out,
        "between_evaluation_sets": between,
    }
    for side in sides:
        groups = [[int(photo) for photo in group] for group in groups_inside(con, side, threshold)]
        found[f"inside_{side}"] = listed(groups)
    return found


def listed(groups: list[list[int]]) -> dict:
    """Groups of duplicate photos as the overlap report lists them."""
    return {"groups": len(groups), "photos": sum(map(len, groups)), "photo_ids": groups}
