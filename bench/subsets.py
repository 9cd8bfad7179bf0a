"""Subsets benchmark: building Train/Balanced/Unseen/LifeStages at 10 M curated rows.

    python bench/subsets.py [--rows 10000000] [--workdir /tmp/biotrove-bench]   (make bench)

Input: the sample's newer month, curated, then tiled in DuckDB with fresh photo ids and
observation uuids per copy (so species grow and caps bite). Prints wall time, rows/s, peak RSS
and the linear projection to a full snapshot's curated table (target <= 5 min).
"""

from __future__ import annotations

import argparse
import sys
import tarfile
from datetime import date
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.measure import measured  # noqa: E402
from workflow_scripts.curate import curate  # noqa: E402
from workflow_scripts.sample_snapshot import generate  # noqa: E402

FULL_CURATED_ROWS = 162_000_000  # the paper's curated BioTrove: 161.9 M images


def tiled_curated(workdir: Path, rows: int) -> Path:
    target = workdir / f"curated-{rows}.parquet"
    if target.exists():
        return target
    mirror = workdir / "mirror"
    if not (mirror / "metadata").exists():
        generate(mirror, seed=20240927, months=[date(2024, 8, 27), date(2024, 9, 27)], images=False)
    bundle = "inaturalist-open-data-20240927"
    with tarfile.open(mirror / "metadata" / f"{bundle}.tar.gz") as tar:
        tar.extractall(workdir, filter="data")
    curate(workdir / bundle, mirror / "inaturalist-taxonomy.dwca.zip", workdir / "curated-sample")
    source = workdir / "curated-sample" / "curated.parquet"
    base = duckdb.sql(f"SELECT count(*) FROM '{source}'").fetchone()[0]
    duckdb.sql(f"""COPY (SELECT c.* REPLACE (c.photo_id + r.range * 1000000000 AS photo_id,
                                            printf('%08x', r.range) || c.observation_uuid[9:] AS observation_uuid)
                        FROM '{source}' AS c, range({-(-rows // base)}) AS r LIMIT {rows})
                   TO '{target}' (FORMAT parquet)""")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/biotrove-bench"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    curated = tiled_curated(args.workdir, args.rows)
    export = args.workdir / "mirror" / "exports" / "observations-lifestages.csv"
    seconds, rss = measured([sys.executable, "-m", "workflow_scripts.subsets", "--curated", str(curated), "--out",
                             str(args.workdir / "subsets"), "--lifestages", str(export)])
    print(f"{args.rows:,} curated rows: {seconds:.1f} s, {args.rows / seconds:,.0f} rows/s, peak RSS {rss:.2f} GB")
    print(f"projected to {FULL_CURATED_ROWS / 1e6:.0f} M curated rows (linear): "
          f"{seconds * FULL_CURATED_ROWS / args.rows / 60:.1f} min (target <= 5 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
