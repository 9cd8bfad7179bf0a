"""The training input pipeline: the project's (open_clip_train as workflow_scripts.train configures
it: a caption type drawn per batch, seeded shuffle) against bare open_clip_train's (its own
shuffle, a plain `txt` caption), on the same shards, with ViT-B/16's training preprocessing at 224.

    python bench/loader.py [--samples 2000] [--workers 1]

The shards hold `--samples` synthetic photos (smooth colour fields with grain, JPEG quality 90),
once at iNaturalist's "medium" size (500 x 375) and once at 256 x 192 (what
`images.resize_mode: keep_ratio_largest` with `images.image_size: 256` keeps: the long side 256;
img2dataset's `keep_ratio` sets the short side, 341 x 256), every caption type of the
project and a `txt` for bare open_clip. Each pipeline is open_clip_train's own DataLoader
(`open_clip_train.data.get_wds_dataset`) with `--workers` workers, timed from its first batch to
its last, alternately and twice each (the best of two). Prints the bytes per image and samples/s
per worker of each size and pipeline, the workers one GPU needs for 2,500 samples/s, and ends
with `project/bare: X.XX` at the medium size (target >= 0.95).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from workflow_scripts import train  # noqa: E402
from workflow_scripts.common.captions import captions  # noqa: E402
from workflow_scripts.common.config import load_config  # noqa: E402

SIZES = {"medium": (500, 375), "256": (256, 192)}
PER_SHARD = 250
TARGET = (
    2_500  # samples/s one GPU consumes (ViT-B/16 bf16 on an H100-class GPU: the estimate)
)
BATCH = 64


def photo(rng: np.random.RandomState, size: tuple[int, int]) -> bytes:
    """A photo-like JPEG: a smooth random colour field with grain (compresses like a photo, not like
    flat colour or pure noise)."""
    field = Image.fromarray(rng.randint(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
        size, Image.BICUBIC
    )
    grain = rng.normal(0, 12, (size[1], size[0], 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(np.asarray(field) + grain, 0, 255).astype(np.uint8)).save(
        out, "JPEG", quality=90
    )
    return out.getvalue()


def write_shards(folder: Path, samples: int, size: tuple[int, int]) -> int:
    """Shards of `samples` photos in the project's sample layout plus `txt`; returns their bytes of
    images."""
    import webdataset as wds

    folder.mkdir(parents=True)
    rng, image_bytes, sizes = np.random.RandomState(0), 0, {}
    for shard in range(math.ceil(samples / PER_SHARD)):
        name = f"shard-{shard:06d}.tar"
        count = min(PER_SHARD, samples - shard * PER_SHARD)
        with wds.TarWriter(str(folder / name), encoder=False) as writer:
            for key in range(shard * PER_SHARD, shard * PER_SHARD + count):
                row = {
                    "photo_id": key,
                    "kingdom": "Animalia",
                    "phylum": "Arthropoda",
                    "class": "Insecta",
                    "order": "Lepidoptera",
                    "family": "Nymphalidae",
                    "genus": f"Genus{key % 37}",
                    "species": f"Genus{key % 37} species{key % 400}",
                    "common_name": f"common {key % 400}",
                }
                image = photo(rng, size)
                image_bytes += len(image)
                texts = {f"{kind}.txt": text.encode() for kind, text in captions(row).items()}
                writer.write(
                    {
                        "__key__": str(key),
                        "jpg": image,
                        "json": json.dumps(row).encode(),
                        **texts,
                        "txt": texts["taxonomic_name.txt"],
                    }
                )
        sizes[name] = count
    (folder / "sizes.json").write_text(json.dumps(sizes))
    return image_bytes


def samples_per_second(shards: Path, samples: int, workers: int, project: bool) -> float:
    """Samples/s of open_clip_train's training DataLoader over the shards, after its first batch."""
    import open_clip
    import open_clip_train.data
    from open_clip_train.params import parse_args

    settings = load_config(REPO / "config.yaml")["train"]
    last = len(json.loads((shards / "sizes.json").read_text())) - 1
    args = parse_args(
        [
            "--train-data",
            str(shards / f"shard-{{000000..{last:06d}}}.tar"),
            "--dataset-type",
            "webdataset",
            "--train-num-samples",
            str(samples),
            "--batch-size",
            str(BATCH),
            "--workers",
            str(workers),
            "--seed",
            "0",
        ]
    )
    args.world_size, args.rank = 1, 0
    pipeline = (  # the project's: as workflow_scripts.train sets it
        train.captioned_shuffle(
            settings["seed"], settings["caption_types"], settings["caption_choice"], BATCH
        )
        if project
        else contextlib.nullcontext()
    )
    with pipeline:
        preprocess = open_clip.image_transform(224, is_train=True)  # ViT-B/16's training transform
        data = open_clip_train.data.get_wds_dataset(
            args, preprocess, is_train=True, epoch=0, tokenizer=open_clip.get_tokenizer("ViT-B-16")
        )
        batches = iter(data.dataloader)
        first = next(batches)[0].shape[0]
        started, seen = time.perf_counter(), 0
        for images, _ in batches:
            seen += images.shape[0]
        seconds = time.perf_counter() - started
        del batches
    if seen < samples // 2:
        raise SystemExit(f"only {first + seen} of {samples} samples came through: check the shards")
    return seen / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument(
        "--workers", type=int, default=1, help="DataLoader workers (the rate is per worker)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/biotrove-bench-loader"))
    args = parser.parse_args()
    rates = {}
    for label, size in SIZES.items():
        shards = args.workdir / f"{args.samples}-{label}"
        if not (shards / "sizes.json").exists():
            image_bytes = write_shards(shards, args.samples, size)
            (shards / "bytes.json").write_text(json.dumps(image_bytes))
        image_bytes = json.loads((shards / "bytes.json").read_text())
        runs = {"project": [], "bare": []}
        for _ in range(2):
            for kind in runs:
                runs[kind].append(
                    samples_per_second(shards, args.samples, args.workers, kind == "project")
                )
        rates[label] = {kind: max(values) / args.workers for kind, values in runs.items()}
        print(
            f"{label} ({size[0]} x {size[1]}, {image_bytes / args.samples / 1e3:.1f} KB "
            f"per image): "
            + ", ".join(
                f"{kind} {', '.join(f'{v:.0f}' for v in values)} samples/s"
                for kind, values in runs.items()
            )
            + f" with {args.workers} worker(s); best per worker: project "
            f"{rates[label]['project']:.0f}, bare {rates[label]['bare']:.0f}",
            flush=True,
        )
    for label in SIZES:
        print(
            f"workers per GPU for {TARGET:,} samples/s at {label}: "
            f"{math.ceil(TARGET / rates[label]['project'])} (each "
            f"{rates[label]['project']:.0f} samples/s)"
        )
    print(f"project/bare: {rates['medium']['project'] / rates['medium']['bare']:.2f}")


if __name__ == "__main__":
    main()
