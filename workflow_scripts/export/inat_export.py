"""A subset in the iNaturalist 2021 competition format (visipedia/inat_comp), for code written for
the competitions: per set a COCO-style JSON and the images under its folder layout.

    python -m workflow_scripts.export.inat_export --shards data/snapshots/<date>/shards/balanced \\
        --table data/snapshots/<date>/subsets/balanced.parquet --subset balanced \\
        --out data/snapshots/<date>/exports/inat2021/balanced \\
        [--subsets '{"categories": {"Aves": "class"}}']

Sets: Train's train, val and test splits (train.json and train.tar, val.*, test.*); a benchmark's
images as one set, test.json and test.tar. Each set's images are those of its shards (duplicates
already left out), packed in <set>.tar as <set>/<image_dir_name>/<photo_uuid>.<extension>, the
names the competition's own archives (train.tar.gz beside train.json) extract to: `tar xf` gives
its folder layout. Members sorted by name, headers with no time, owner or mode of the machine: the
same images make the same bytes. A plain tar: the images are compressed already (and gzip's bytes
would vary with the zlib build), and one file per set is what DVC can track at full size. The JSON
lists the images in the tar's order:
- images: id (the photo_id), file_name, width, height (of the file), license (an id into
  `licenses`), date (observed on), latitude, longitude, location_uncertainty (metres). No
  rights_holder: the pipeline stores no observer data; a photo's attribution is on
  https://www.inaturalist.org/photos/<id> (the data card says more);
- categories: id (the class's index in our evaluation's class order), name (the species, or
  LifeStages' label), common_name, supercategory (the paper's category: config subsets.categories,
  common.taxonomy's rule), kingdom ... genus, specific_epithet, image_dir_name;
  every class of the subset in each set, so that ids agree across Train's sets;
- annotations: id and image_id (the photo_id), category_id; licenses: id, name (the code), url.
The JSON is written a record at a time (Train's is gigabytes at full size).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from PIL import Image
from tqdm import tqdm

from workflow_scripts.common import cli, config, contracts
from workflow_scripts.common.benchmarks import SUBSET_BENCHMARKS, Benchmark, subset_benchmark
from workflow_scripts.common.duck import quote
from workflow_scripts.common.files import building
from workflow_scripts.common.inat_format import LICENSE_URLS, LICENSES
from workflow_scripts.common.tars import image_format, packing, read_images
from workflow_scripts.common.taxonomy import ABOVE_SPECIES, category

BATCH = 10_000  # image rows fetched at a time


def sets(subset: str) -> dict[str, str]:
    """{set name: its shard set}: the splits of a subset with splits, or a benchmark's whole shards
    as `test`."""
    return (
        {name: name for name in contracts.TRAIN_SPLITS}
        if subset in contracts.SPLIT_SUBSETS
        else {"test": contracts.WHOLE}
    )


def category_record(number: int, row: dict, column: str, categories: dict[str, str]) -> dict:
    """A class's category record; `row`: a subset row of the class (its taxonomy)."""
    species = row["species"] or ""
    epithet = species.split()[-1] if " " in species else ""  # as the captions take it
    names = (
        [row[rank] or "" for rank in ABOVE_SPECIES]
        + [epithet]
        + ([row["label"]] if column == "label" else [])
    )
    return {
        "id": number,
        "name": row[column] or "",
        "common_name": row["common_name"],
        "supercategory": category(row, categories),
        **{rank: row[rank] for rank in ABOVE_SPECIES},
        "specific_epithet": epithet,
        "image_dir_name": "_".join(
            [f"{number:05d}", *(name.replace(" ", "_").replace("/", "_") for name in names)]
        ),
    }


def write_set(
    benchmark: Benchmark,
    table: Path,
    column: str,
    categories: dict[str, str],
    set_name: str,
    info: dict,
    out: Path,
) -> None:
    """One set (a shard set read as a benchmark): out/<set>.tar (its images, by file name) and
    out/<set>.json (in the same order)."""
    records = [
        category_record(number, row, column, categories)
        for number, row in enumerate(benchmark.class_rows)
    ]
    licenses = {code: number for number, code in enumerate(LICENSES)}
    con = duckdb.connect()
    con.register(
        "images",
        pa.table(
            {
                "position": np.arange(len(benchmark.keys)),
                "photo_id": benchmark.keys,
                "category": benchmark.labels,
            }
        ),
    )
    con.register(
        "folders",
        pa.table(
            {
                "category": np.arange(len(records)),
                "folder": [record["image_dir_name"] for record in records],
            }
        ),
    )
    # by file name: folders start with their class's number and '_' (none is another's prefix),
    # uuids have one length
    rows = con.execute(f"""SELECT i.position, s.photo_uuid, s.license, s.observed_on, s.latitude,
                                  s.longitude, s.positional_accuracy
                           FROM images AS i JOIN read_parquet({quote(table)}) AS s USING (photo_id)
                                JOIN folders AS f USING (category)
                           ORDER BY f.folder, s.photo_uuid""")
    head = json.dumps(
        {
            "info": info,
            "licenses": [
                {"id": n, "name": code, "url": LICENSE_URLS[code]} for code, n in licenses.items()
            ],
            "categories": records,
        }
    )
    with (
        open(out / f"{set_name}.json", "w", encoding="utf-8") as handle,
        packing(out / f"{set_name}.tar") as add,
        tempfile.TemporaryFile("w+", dir=out) as annotations,
        tqdm(
            total=len(benchmark.keys), desc=f"exporting {set_name}", unit="image", mininterval=5
        ) as progress,
    ):
        handle.write(
            head.removesuffix("}") + ', "images": ['
        )  # then the images and annotations, one at a time
        separator = ""
        while batch := rows.fetchmany(BATCH):
            located = [benchmark.locations[row[0]] for row in batch]
            images = read_images(
                [(benchmark.paths[tar], int(offset), int(size)) for tar, offset, size in located]
            )
            for (position, uuid, license_code, observed_on, latitude, longitude, uncertainty), (
                tar,
                data,
            ) in zip(batch, images):
                photo_id, label = benchmark.keys[position], benchmark.labels[position]
                extension = image_format(data, f"{tar} photo {photo_id}")
                file_name = f"{set_name}/{records[label]['image_dir_name']}/{uuid}.{extension}"
                add(file_name, data)
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
                record = {
                    "id": int(photo_id),
                    "file_name": file_name,
                    "width": width,
                    "height": height,
                    "license": licenses[license_code],
                    "date": observed_on and observed_on.isoformat(),
                    "latitude": latitude,
                    "longitude": longitude,
                    "location_uncertainty": uncertainty,
                }
                handle.write(separator + json.dumps(record))
                annotations.write(
                    separator
                    + json.dumps(
                        {"id": int(photo_id), "image_id": int(photo_id), "category_id": int(label)}
                    )
                )
                separator = ", "
                progress.update()
        handle.write('], "annotations": [')
        annotations.seek(0)
        shutil.copyfileobj(annotations, handle)
        handle.write("]}\n")


def export(
    shards: Path, table: Path, subset: str, out: Path, categories: dict[str, str], date: str
) -> dict:
    """Write the subset's sets into the folder `out`; returns per set its images and the table's
    rows of the set that are not in the shards (downloads failed, duplicates left out:
    shards_report.json)."""
    column = SUBSET_BENCHMARKS[subset][1]
    counted = {}
    with building(out) as staging:
        for set_name, shard_set in sets(subset).items():
            benchmark = subset_benchmark(shards, table, subset, shard_set)
            in_set = "" if shard_set == contracts.WHOLE else f" WHERE split = {quote(shard_set)}"
            rows = duckdb.sql(
                f"SELECT count(*) FROM read_parquet({quote(table)}){in_set}"
            ).fetchone()[0]
            counted[set_name] = {
                "images": len(benchmark.keys),
                "not_in_shards": rows - len(benchmark.keys),
            }
            info = {
                "description": (
                    f"BioTrove {subset}, {set_name} set, from iNaturalist Open Data {date}: "
                    f"{len(benchmark.keys)} of the subset's {rows} rows (the others have no image "
                    f"in the shards: see their shards_report.json)"
                ),
                "contributor": "iNaturalist users (each photo's license: licenses; attribution: "
                "its photo page)",
                "url": "https://github.com/inaturalist/inaturalist-open-data",
                "version": date,
            }
            write_set(benchmark, table, column, categories, set_name, info, staging)
    return counted


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__)
    parser.add_argument("--shards", type=Path, required=True, help="the subset's shards folder")
    parser.add_argument("--table", type=Path, required=True, help="the subset's table")
    parser.add_argument("--subset", required=True, choices=contracts.SUBSETS)
    parser.add_argument(
        "--subsets",
        type=json.loads,
        default={},
        help="config.yaml's `subsets` section as JSON: its categories are the supercategories",
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    categories = config.settings("subsets", args.subsets)["categories"]
    with cli.running(args, inputs=[args.shards, args.table], recorded={"categories": categories}):
        written = export(
            args.shards, args.table, args.subset, args.out, categories, args.date or ""
        )
        print(f"{args.subset}: {written}: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
