"""Zero-shot classification with open_clip, as the paper evaluates: one classifier row per class,
the mean of the normalised text embeddings of the 80 OpenAI ImageNet templates filled with the
class name (open_clip.build_zero_shot_classifier), and images ranked against it.

Images are decoded and preprocessed by DataLoader workers (any number: the batches are the same
consecutive images) and encoded once per benchmark; their features go to a file as they come and
are read back a batch at a time by every classifier (levels, name modes) and the conformal sets,
so memory does not grow with the benchmark. On CUDA the model runs under autocast in the
configured precision.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from tqdm import tqdm

from workflow_scripts.common.models import register_model_configs
from workflow_scripts.common.templates import TEMPLATES
from workflow_scripts.evaluate.errors import EvaluateError

LOGIT_SCALE = 100.0  # CLIP's zero-shot temperature
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
READ_BATCH = 4096  # feature rows read back at a time
CLASSES_PER_BATCH = 50  # classes whose prompts the text tower encodes at once


def load_model(model: str, pretrained: str | None, device: str = "cpu"):
    """(model in eval mode, image preprocessing, tokenizer); the project's model configs known.
    `pretrained`: an open_clip tag, a checkpoint file (ours or anyone's), or None (random init)."""
    register_model_configs()
    torch.manual_seed(0)  # a random-init control is the same model every time
    network, _, preprocess = open_clip.create_model_and_transforms(
        model, pretrained=pretrained, device=device
    )
    return network.eval(), preprocess, open_clip.get_tokenizer(model)


def autocast(network, precision: str = "fp32"):
    """The context the model runs in: autocast to bf16/fp16 on CUDA; fp32 as it is."""
    device = next(network.parameters()).device
    if PRECISIONS[precision] is None:
        return contextlib.nullcontext()
    if device.type != "cuda":
        raise EvaluateError(
            f"config evaluate.precision {precision} runs on CUDA only, and the model is on "
            f"{device.type}: set evaluate.precision: fp32 (what the CPU runs), or evaluate.device: "
            "cuda on a machine with a GPU"
        )
    return torch.autocast("cuda", dtype=PRECISIONS[precision])


def classifier(
    network,
    tokenizer,
    class_names: list[str],
    templates=TEMPLATES,
    precision: str = "fp32",
    encoded: dict | None = None,
) -> torch.Tensor:
    """(embedding size x classes), float32, on the model's device. The prompts are encoded
    CLASSES_PER_BATCH classes at a time, as open_clip.build_zero_shot_classifier batches them;
    `encoded` (a dict kept across calls with one network) holds each batch's columns, so a batch
    met again (Table 8's name modes repeat many) is not encoded again: the same bytes, as the same
    batch encodes the same way."""
    device = next(network.parameters()).device
    encoded = {} if encoded is None else encoded
    columns = []
    with torch.no_grad(), autocast(network, precision):
        for start in range(0, len(class_names), CLASSES_PER_BATCH):
            batch = tuple(class_names[start : start + CLASSES_PER_BATCH])
            key = (batch, tuple(templates), precision)
            if key not in encoded:
                encoded[key] = open_clip.build_zero_shot_classifier(
                    network,
                    tokenizer,
                    batch,
                    templates,
                    num_classes_per_batch=CLASSES_PER_BATCH,
                    device=device,
                    use_tqdm=False,
                )
            columns.append(encoded[key])
        return torch.cat(columns, dim=1).float()


class Images(torch.utils.data.Dataset):
    """A benchmark's images, preprocessed: item i is image i, read at its location (a tar member, or
    a whole file: workflow_scripts.common.benchmarks.Benchmark)."""

    def __init__(self, paths: list[str], locations: np.ndarray, preprocess):
        self.paths, self.locations, self.preprocess = paths, locations, preprocess
        self.open: tuple[int, io.BufferedReader] | None = None  # the last file read, per worker

    def __len__(self) -> int:
        return len(self.locations)

    def __getitem__(self, number: int) -> torch.Tensor:
        path, offset, size = (int(value) for value in self.locations[number])
        if offset < 0:
            with Image.open(self.paths[path]) as image:
                return self.preprocess(image.convert("RGB"))
        if self.open is None or self.open[0] != path:
            if self.open:
                self.open[1].close()
            self.open = (path, open(self.paths[path], "rb"))
        self.open[1].seek(offset)
        return self.preprocess(Image.open(io.BytesIO(self.open[1].read(size))).convert("RGB"))


class Features:
    """Normalised image embeddings (images x embedding size, float32) in a file, written as they are
    computed and read back a batch at a time."""

    def __init__(self, path: Path):
        self.path, self.rows, self.width = path, 0, 0

    def append(self, batch: np.ndarray) -> None:
        self.width = batch.shape[1]
        with open(self.path, "ab") as handle:
            handle.write(np.ascontiguousarray(batch, np.float32).tobytes())
        self.rows += len(batch)

    def __len__(self) -> int:
        return self.rows

    def batches(self, rows: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(index of the batch's first row among those selected, the batch), of the rows selected by
        the boolean mask `rows` (every row when None)."""
        done = 0
        with open(self.path, "rb") as handle:
            for start in range(0, self.rows, READ_BATCH):
                batch = np.fromfile(
                    handle, np.float32, min(READ_BATCH, self.rows - start) * self.width
                )
                batch = batch.reshape(-1, self.width)
                if rows is not None:
                    batch = batch[rows[start : start + len(batch)]]
                if len(batch):
                    yield done, batch
                    done += len(batch)


def encode_images(
    network,
    preprocess,
    paths: list[str],
    locations: np.ndarray,
    out: Path,
    batch_size: int = 256,
    workers: int = 0,
    precision: str = "fp32",
    label: str = "images",
) -> Features:
    """The images' normalised embeddings into the file `out`, a batch at a time."""
    device = next(network.parameters()).device
    features = Features(out)
    out.unlink(missing_ok=True)
    loader = torch.utils.data.DataLoader(
        Images(paths, locations, preprocess),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    with torch.no_grad(), autocast(network, precision):
        for batch in tqdm(loader, desc=f"encoding {label}", unit=" batches", mininterval=5):
            encoded = network.encode_image(batch.to(device, non_blocking=True))
            features.append(torch.nn.functional.normalize(encoded.float(), dim=-1).cpu().numpy())
    return features


def probabilities(
    features: Features, weights: torch.Tensor, rows: np.ndarray | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, softmax probabilities of a batch of images x classes), batch by batch, of the
    rows the boolean mask `rows` selects (all when None)."""
    for start, batch in features.batches(rows):
        with torch.no_grad():
            logits = LOGIT_SCALE * torch.from_numpy(batch).to(weights.device) @ weights
        yield start, logits.softmax(dim=-1).cpu().numpy()


def top_k(features: Features, weights: torch.Tensor, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the k best class indices and their probabilities."""
    k = min(k, weights.shape[1])
    ids, scores = np.zeros((len(features), k), np.int64), np.zeros((len(features), k), np.float32)
    for start, batch in probabilities(features, weights):
        best = np.argsort(-batch, axis=1, kind="stable")[:, :k]
        ids[start : start + len(batch)], scores[start : start + len(batch)] = (
            best,
            np.take_along_axis(batch, best, 1),
        )
    return ids, scores
