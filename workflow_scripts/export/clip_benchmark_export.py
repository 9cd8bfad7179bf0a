"""One evaluation benchmark in LAION clip_benchmark's webdataset layout, so that its runner scores
the images, class names and prompts our evaluation uses (docs/exports.md: "Our benchmarks
in clip_benchmark").

    python -m workflow_scripts.export.clip_benchmark_export --benchmark balanced \\
        --shards data/snapshots/<date>/shards/balanced \\
        --tables data/snapshots/<date>/subsets/balanced.parquet \\
        --out data/snapshots/<date>/exports/clip_benchmark/balanced [--config config.yaml]

--shards and --tables: one of our benchmarks' shards folder and table; none for an external
benchmark (--external names its files).

The folder (`clip_benchmark eval --dataset wds/<name> --dataset_root <folder>`):
- test/0.tar ... test/<n-1>.tar and test/nshards.txt: per sample the image and `cls`, its class's
  line in classnames.txt; `export.samples_per_shard` samples per tar, in evaluation's order;
- classnames.txt: the names our classifier is built from, one per line, in its class order;
- zeroshot_classification_templates.txt: our 80 prompts, `{c}` where the class name goes;
- manifest.csv: per sample its key in the tars, its photo_id (an external benchmark's: its image
  key), cls and class name.
JPEG, PNG and WebP images keep their bytes; any other format (GIF) becomes a PNG of the pixels our
evaluation decodes (clip_benchmark reads only those three). The settings are config.yaml's `export`
section and `evaluate.external`.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from workflow_scripts.common import cli, config, contracts
from workflow_scripts.common.benchmarks import (
    SUBSET_BENCHMARKS,
    Benchmark,
    benchmark_inputs,
    open_benchmark,
)
from workflow_scripts.common.files import building, write_text
from workflow_scripts.common.tars import read_images, tar_writer
from workflow_scripts.common.templates import TEMPLATES

READABLE = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
}  # clip_benchmark's keys by PIL format
# (MPO: a JPEG holding more pictures; both readers decode its first)
SPLIT = "test"  # the split clip_benchmark evaluates by default
CLASS_NAMES = "classnames.txt"
TEMPLATES_FILE = "zeroshot_classification_templates.txt"


class ExportError(cli.StageError):
    """A benchmark that clip_benchmark's format cannot hold; the message says which and why."""


def template_lines(templates=TEMPLATES) -> list[str]:
    """Our prompt templates (functions of the class name) as clip_benchmark's `{c}` strings."""
    lines = [template("{c}") for template in templates]
    for line, template in zip(lines, templates):
        if (
            line.count("{c}") != 1
            or line.strip() != line
            or line.format(c="x y") != template("x y")
        ):
            raise ExportError(
                f"prompt {line!r} cannot be written as a clip_benchmark template line"
            )
    return lines


def class_lines(names: list[str]) -> list[str]:
    """The class names, checked to survive clip_benchmark's reading (one per line, stripped)."""
    for number, name in enumerate(names):
        if not name or name.strip() != name or name.splitlines() != [name]:
            raise ExportError(
                f"class {number} {name!r}: clip_benchmark reads class names one per line, "
                f"stripped; this one would change"
            )
    return names


def readable(data: bytes) -> tuple[str, bytes]:
    """(clip_benchmark's key, bytes): a JPEG, PNG or WebP as it is, anything else as a PNG of the
    RGB pixels our evaluation decodes from it."""
    with Image.open(io.BytesIO(data)) as image:
        if image.format in READABLE:
            return READABLE[image.format], data
        converted = io.BytesIO()
        image.convert("RGB").save(converted, format="PNG")
        return "png", converted.getvalue()


def export(
    benchmark: Benchmark, out: Path, samples_per_shard: int, id_column: str = "photo_id"
) -> int:
    """Write `benchmark` into the folder `out`; returns its number of tars."""
    if not len(benchmark.keys):
        raise ExportError("the benchmark has no images: nothing to export")
    names = class_lines(benchmark.class_keys)
    locations = [
        (benchmark.paths[path], int(offset), int(size))
        for path, offset, size in benchmark.locations
    ]
    keyed = (
        id_column == "photo_id"
    )  # a photo_id is a safe tar key; an external image key may hold '.' or '/'
    with building(out) as staging:
        (staging / SPLIT).mkdir()
        tars = -(-len(locations) // samples_per_shard)
        with open(
            staging / contracts.CLIP_BENCHMARK_MANIFEST, "w", newline="", encoding="utf-8"
        ) as handle:
            manifest = csv.writer(handle, lineterminator="\n")
            manifest.writerow(["key", id_column, "cls", "class_name"])
            images = zip(read_images(locations), benchmark.keys, benchmark.labels)
            progress = tqdm(
                total=len(locations), desc=f"exporting {out.name}", unit="image", mininterval=5
            )
            for number in range(tars):
                with tar_writer(staging / SPLIT / f"{number}.tar") as writer:
                    for position in range(
                        number * samples_per_shard,
                        min((number + 1) * samples_per_shard, len(locations)),
                    ):
                        (_, data), image_id, label = next(images)
                        key = str(image_id) if keyed else f"{position:08d}"
                        extension, data = readable(data)
                        writer.write(
                            {"__key__": key, extension: data, "cls": str(int(label)).encode()}
                        )
                        manifest.writerow([key, image_id, int(label), names[label]])
                        progress.update()
            progress.close()
        write_text(staging / SPLIT / "nshards.txt", f"{tars}\n")
        write_text(staging / CLASS_NAMES, "".join(f"{name}\n" for name in names))
        write_text(staging / TEMPLATES_FILE, "".join(f"{line}\n" for line in template_lines()))
    return tars


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__spec__.name, __doc__, section="export")
    parser.add_argument(
        "--benchmark", required=True, help="one of evaluate.benchmarks or evaluate.external"
    )
    parser.add_argument(
        "--shards",
        type=Path,
        nargs="*",
        default=[],
        help="our benchmark's shards folder (shards/<subset>); none for an external one",
    )
    parser.add_argument(
        "--tables",
        type=Path,
        nargs="*",
        default=[],
        help="our benchmark's table (subsets/<subset>.parquet); none for an external one",
    )
    parser.add_argument(
        "--external",
        type=json.loads,
        default={},
        help="config.yaml's evaluate.external as JSON (the external benchmarks)",
    )
    parser.add_argument("--out", type=Path, required=True, help="the folder to write")
    args = parser.parse_args(argv)
    evaluate = config.settings(
        "evaluate", {"external": args.external, "benchmarks": list(contracts.SUBSETS)}
    )
    if args.benchmark not in contracts.benchmark_names(evaluate):
        parser.error(
            f"--benchmark {args.benchmark}: not one of ours or of --external "
            f"({', '.join(contracts.benchmark_names(evaluate))})"
        )
    try:
        subsets = contracts.subset_inputs(args.shards, args.tables)
    except ValueError as exc:
        parser.error(f"--shards, --tables: {exc}")
    ours = [args.benchmark] if args.benchmark in SUBSET_BENCHMARKS else []
    if list(subsets) != ours:
        parser.error(
            f"--shards, --tables: {'those of ' + args.benchmark if ours else 'none'} expected "
            f"(--benchmark {args.benchmark}), got {', '.join(subsets) or 'none'}"
        )
    with cli.running(
        args,
        inputs=benchmark_inputs(args.benchmark, subsets, evaluate),
        recorded={"export": cli.settings(args), "external": args.external},
    ) as settings:
        benchmark = open_benchmark(args.benchmark, subsets, evaluate)
        tars = export(
            benchmark,
            args.out,
            settings["samples_per_shard"],
            "photo_id" if args.benchmark in SUBSET_BENCHMARKS else "image",
        )
        print(
            f"{args.benchmark}: {len(benchmark.keys):,} images of {len(benchmark.class_keys):,} "
            f"classes in {tars} tars: {args.out}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
