"""A subset's shards folder, from its parts: each shard set's shards (hard links: no copy) and
sizes.json in its folder (a subset with splits: in train/, val/ and test/; another in the folder
itself), shards_report.json and the species mixing per batch of the shard order against a local
shuffle (the paper's Figure 5c: shuffle_quality.{csv,md,png}; with splits, of the train split).

    python -m workflow_scripts.images.shards \\
        --parts data/snapshots/<date>/images/train/parts/*/* \\
        --order data/snapshots/<date>/images/train/shard_order.parquet \\
        --subset data/snapshots/<date>/subsets/train.parquet \\
        --download data/snapshots/<date>/images/train/download_report.json \\
        --image-overlap data/snapshots/<date>/images/overlap_report.json \\
        --out data/snapshots/<date>/shards/train [--config config.yaml]

shards_report.json: samples, shards, settings, the photos without a downloaded image (the failure
ledger's), those left out as duplicates of an evaluation image (by reason: exact_duplicate,
near_duplicate), and for Train the samples per split.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import duckdb
import pyarrow.compute as pc

from workflow_scripts.common import cli, contracts
from workflow_scripts.common.config import RENAMED
from workflow_scripts.common.config import settings as shards_settings
from workflow_scripts.common.duck import quote
from workflow_scripts.common.files import building, write_json
from workflow_scripts.common.tables import write_table
from workflow_scripts.images.shard_order import duplicates_of
from workflow_scripts.images.shuffle import plot_shuffle_quality, shuffle_quality

# The report records the settings under their names before the rename (config.RENAMED), the
# authors' words: its bytes, and so the shards folder's hash, stay those of earlier runs.
RECORDED_AS = {new: old for old, new in RENAMED["shards"].items()}


def collect(
    parts: list[Path],
    order: Path,
    subset: Path,
    download: Path,
    out: Path,
    settings: dict | None = None,
    drop: dict[str, list[int]] | None = None,
) -> dict:
    """Put the parts (each in a folder named for its shard set) together into the folder `out`;
    returns shards_report.json."""
    settings = shards_settings("shards", settings)
    con = duckdb.connect()
    con.execute(f"CREATE VIEW subset AS SELECT * FROM read_parquet({quote(subset)})")
    con.execute(
        f"CREATE VIEW ordered AS SELECT o.shard_set, o.position, s.* "
        f"FROM read_parquet({quote(order)}) AS o JOIN subset AS s USING (photo_id)"
    )
    failures = download.parent / contracts.FAILURES
    sets = contracts.shard_sets(subset.stem)
    with building(out) as staging:
        sizes = {}
        for shard_set in sets:
            folder = Path(contracts.shard_set(str(staging), shard_set))
            folder.mkdir(exist_ok=True)
            sizes[shard_set] = {}
            for part in sorted(part for part in parts if part.parent.name == shard_set):
                for name, samples in json.loads((part / contracts.SHARD_SIZES).read_text()).items():
                    os.link(part / name, folder / name)
                    sizes[shard_set][name] = samples
            write_json(folder / contracts.SHARD_SIZES, dict(sorted(sizes[shard_set].items())))
        shaping = {  # not shards_per_job: how the work was cut, not the shards
            RECORDED_AS.get(k, k): v for k, v in settings.items() if k != "shards_per_job"
        }
        report = {
            "samples": sum(sum(counts.values()) for counts in sizes.values()),
            "shards": sum(len(counts) for counts in sizes.values()),
            "settings": shaping,
            "without_image": [
                row[0]
                for row in con.execute(
                    f"SELECT photo_id FROM subset SEMI JOIN read_parquet({quote(failures)}) USING "
                    f"(photo_id) ORDER BY 1"
                ).fetchall()
            ],
            "left_out_as_duplicates": {
                reason: sorted(ids) for reason, ids in sorted((drop or {}).items())
            },
        }
        if "split" in con.table("subset").columns:  # Train: what training may read
            report["splits"] = dict(
                con.execute("SELECT split, count(*) FROM ordered GROUP BY 1 ORDER BY 1").fetchall()
            )
        write_json(staging / contracts.SHARDS_REPORT, report)
        write_mixing(con, subset.stem, sets[0], settings, staging)
    return report


def write_mixing(
    con: duckdb.DuckDBPyConnection, name: str, shard_set: str, settings: dict, folder: Path
) -> None:
    """Figure 5c: species per batch of a local and of the semi-global shuffle of a shard set's
    samples in species order (as the shard order was computed from them)."""
    species = (
        con.sql(
            f"SELECT coalesce(taxonomic_name, '') FROM ordered WHERE shard_set = "
            f"{quote(shard_set)} "
            "ORDER BY taxonomic_name, photo_id"
        )
        .to_arrow_table()
        .column(0)
    )
    codes = pc.dictionary_encode(species).combine_chunks().indices.to_numpy()
    window, segment = settings["window_size"], settings["segment_size"]
    quality = shuffle_quality(
        codes, settings["mixing_batch_sizes"], window, segment, settings["seed"]
    )
    write_table(
        quality, folder / "shuffle_quality", "Species mixing per batch (the paper's Figure 5c)"
    )
    plot_shuffle_quality(
        quality,
        f"{name}: species mixing per batch, local vs semi-global shuffling "
        # the authors' words for a window and a segment, as in the report (RECORDED_AS)
        f"(chunks of {window:,}, parts of {segment:,})",
        folder / "shuffle_quality.png",
    )


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="shards")
    parser.add_argument(
        "--parts", type=Path, nargs="+", required=True, help="the subset's shard parts"
    )
    parser.add_argument("--order", type=Path, required=True, help="the subset's shard order")
    parser.add_argument("--subset", type=Path, required=True, help="the subset Parquet")
    parser.add_argument("--download", type=Path, required=True, help="the subset's download report")
    parser.add_argument(
        "--image-overlap", type=Path, help="the image overlap report (what was left out)"
    )
    parser.add_argument("--out", type=Path, required=True, help="the shards folder to write")
    args = parser.parse_args(argv)
    # not the order file: where img2dataset's threads happened to put each image varies run to run
    inputs = [*args.parts, args.subset, args.download, args.image_overlap]
    with cli.running(args, inputs=inputs) as settings:
        report = collect(
            args.parts,
            args.order,
            args.subset,
            args.download,
            args.out,
            settings,
            duplicates_of(args.image_overlap, args.subset.stem),
        )
    print(f"{args.out}: {report['shards']} shards, {report['samples']:,} samples", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
