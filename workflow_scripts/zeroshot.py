"""Zero-shot classification with open_clip, as the paper evaluates: one classifier row per class,
the mean of the normalised text embeddings of the 80 OpenAI ImageNet templates filled with the
class name (open_clip.build_zero_shot_classifier), and images ranked against it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import open_clip
import torch
import webdataset as wds
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from PIL import Image

MODEL_CONFIGS = Path(__file__).parent / "model_configs"


def load_model(model: str, pretrained: str | None):
    """(model in eval mode, image preprocessing, tokenizer); the project's model configs known.
    `pretrained`: an open_clip tag, a checkpoint file (ours or anyone's), or None (random init)."""
    open_clip.add_model_config(MODEL_CONFIGS)
    torch.manual_seed(0)  # a random-init control is the same model every time
    network, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained, device="cpu")
    return network.eval(), preprocess, open_clip.get_tokenizer(model)


def classifier(network, tokenizer, class_names: list[str], templates=OPENAI_IMAGENET_TEMPLATES) -> torch.Tensor:
    with torch.no_grad():
        return open_clip.build_zero_shot_classifier(network, tokenizer, class_names, templates, num_classes_per_batch=50,
                                                    device="cpu", use_tqdm=False)


def top_k(network, preprocess, images: list[Image.Image], weights: torch.Tensor, k: int = 5,
          batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the k best class indices and their softmax probabilities (logit scale 100)."""
    ids, scores = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([preprocess(image) for image in images[start:start + batch_size]])
            features = torch.nn.functional.normalize(network.encode_image(pixels), dim=-1)
            probabilities = (100.0 * features @ weights).softmax(dim=-1)
            best = probabilities.topk(min(k, weights.shape[1]), dim=-1)
            ids.append(best.indices.numpy())
            scores.append(best.values.numpy())
    return np.concatenate(ids), np.concatenate(scores)


def shard_samples(shards: Path, split: str | None = None) -> tuple[list[tuple[Image.Image, dict]], list[dict]]:
    """One pass over a shards folder, in shard order: (image, curated row) of the samples of
    `split` (all when None; Train's shards hold its train, val and test splits), and every
    sample's row whatever its split (images outside the split are not decoded)."""
    tars = [str(shards / name) for name in json.loads((shards / "sizes.json").read_text())]
    found, rows = [], []
    for sample in wds.WebDataset(tars, shardshuffle=False):
        rows.append(json.loads(sample["json"]))
        if split is None or rows[-1].get("split") == split:
            data = next(sample[key] for key in ("jpg", "png", "gif", "webp") if key in sample)
            found.append((Image.open(io.BytesIO(data)).convert("RGB"), rows[-1]))
    return found, rows
