"""The perceptual hashes (images/perceptual.py) of an external benchmark's images (config
evaluate.external), keyed by their metadata key, for the image overlap check.

    python -m workflow_scripts.images.hash_external_benchmark --benchmark <name> \\
        --out data/snapshots/<date>/images/external/<name>.hashes.parquet [--config config.yaml]
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb
import pyarrow as pa
from tqdm import tqdm

from workflow_scripts.common import cli
from workflow_scripts.common.benchmarks import WHOLE_FILE, external_benchmark
from workflow_scripts.common.config import settings as evaluate_settings
from workflow_scripts.common.duck import write_parquet
from workflow_scripts.images.perceptual import COLUMNS, hashes_table, pdq


def benchmark_hashes(con: duckdb.DuckDBPyConnection, spec: dict, out: Path) -> int:
    """The hashes of an external benchmark's images (its settings: config evaluate.external.<name>),
    keyed by their metadata key, into the Parquet `out`; returns how many."""
    benchmark = external_benchmark(spec)
    rows = []
    for key, (path, offset, size) in tqdm(
        zip(benchmark.keys, benchmark.locations.tolist()),
        desc="hashing",
        unit="img",
        total=len(benchmark.keys),
    ):
        with open(benchmark.paths[path], "rb") as handle:
            handle.seek(max(offset, 0))
            rows.append(
                (str(key), *pdq(handle.read() if offset == WHOLE_FILE else handle.read(size)))
            )
    key, *hashes = zip(*rows) if rows else ((),) * 4
    con.register(
        "hashed", hashes_table(photo_id=pa.array(key, pa.string()), **dict(zip(COLUMNS, hashes)))
    )
    write_parquet(con, "SELECT * FROM hashed ORDER BY photo_id", out)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="evaluate")
    parser.add_argument(
        "--benchmark", required=True, help="an external benchmark's name (config evaluate.external)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the hashes to write (Parquet)")
    args = parser.parse_args(argv)
    with cli.running(args, inputs=[]) as settings:
        external = evaluate_settings("evaluate", settings)["external"]
        if args.benchmark not in external:
            raise cli.StageError(
                f"no external benchmark {args.benchmark!r} in config evaluate.external "
                f"(it has {sorted(external)})"
            )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        images = benchmark_hashes(duckdb.connect(), external[args.benchmark], args.out)
    print(f"{args.out}: {images} images hashed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
