"""Shards for the GPU check, from a month's Train shards: `--samples` samples of its train split
with each image re-encoded at iNaturalist's "medium" size (500 x 375 JPEG) and a unique key, written
twice: as Train's shards (DST/project/train/, what workflow_scripts.train reads) and with a plain
`txt` caption for bare open_clip_train (DST/bare/).

    python tools/gpu_check/make_data.py SRC DST [--shards 24] [--per-shard 1000]

SRC: a Train shards folder (data/snapshots/<date>/shards/train).
"""

from __future__ import annotations

import argparse
import io
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import webdataset as wds
from PIL import Image

IMAGE_KEYS = ("jpg", "png", "gif", "webp")  # the shards name an image by its format


def medium(sample: dict) -> dict:
    """The sample with its image as a 500 x 375 JPEG (quality 85) under `jpg`."""
    key = next(k for k in IMAGE_KEYS if k in sample)
    image = Image.open(io.BytesIO(sample.pop(key))).convert("RGB").resize((500, 375), Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return {**sample, "jpg": out.getvalue()}


def write(job: tuple[Path, list[dict], bool]) -> int:
    path, samples, bare = job
    with wds.TarWriter(str(path), encoder=False) as writer:
        for sample in samples:
            writer.write({**sample, "txt": sample["taxonomic_name.txt"]} if bare else sample)
    return len(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--shards", type=int, default=24)
    parser.add_argument("--per-shard", type=int, default=1000)
    args = parser.parse_args()
    split = args.source / "train"
    tars = [str(split / name) for name in json.loads((split / "sizes.json").read_text())]
    base = [
        {k: v for k, v in s.items() if k != "__url__" and k != "__local_path__"}
        for s in wds.WebDataset(tars, shardshuffle=False)
    ]
    with ProcessPoolExecutor() as pool:
        base = list(pool.map(medium, base, chunksize=64))
    total = args.shards * args.per_shard
    samples = [{**base[n % len(base)], "__key__": f"s{n:08d}"} for n in range(total)]
    folders = {False: args.target / "project" / "train", True: args.target / "bare"}
    jobs = []
    for bare, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"shard-{n:06d}.tar" for n in range(args.shards)]
        (folder / "sizes.json").write_text(json.dumps({name: args.per_shard for name in names}))
        jobs += [
            (folder / name, samples[n * args.per_shard : (n + 1) * args.per_shard], bare)
            for n, name in enumerate(names)
        ]
    with ProcessPoolExecutor() as pool:
        written = sum(pool.map(write, jobs))
    print(json.dumps({"unique_images": len(base), "samples": total, "written": written}))


if __name__ == "__main__":
    main()
