"""Zero-shot classification with open_clip, as the paper evaluates: one classifier row per class,
the mean of the normalised text embeddings of the 80 OpenAI ImageNet templates filled with the
class name (open_clip.build_zero_shot_classifier), and images ranked against it.

Images are encoded once per benchmark, a batch at a time; every classifier (levels, name modes)
and the conformal sets reuse those features.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import open_clip
import torch
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES
from PIL import Image

from workflow_scripts.common.models import register_model_configs

LOGIT_SCALE = 100.0  # CLIP's zero-shot temperature


def load_model(model: str, pretrained: str | None, device: str = "cpu"):
    """(model in eval mode, image preprocessing, tokenizer); the project's model configs known.
    `pretrained`: an open_clip tag, a checkpoint file (ours or anyone's), or None (random init)."""
    register_model_configs()
    torch.manual_seed(0)  # a random-init control is the same model every time
    network, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=pretrained, device=device)
    return network.eval(), preprocess, open_clip.get_tokenizer(model)


def classifier(network, tokenizer, class_names: list[str], templates=OPENAI_IMAGENET_TEMPLATES) -> torch.Tensor:
    """(embedding size x classes), on the model's device."""
    device = next(network.parameters()).device
    with torch.no_grad():
        return open_clip.build_zero_shot_classifier(network, tokenizer, class_names, templates, num_classes_per_batch=50,
                                                    device=device, use_tqdm=False)


def encode_images(network, preprocess, images: Iterable[Image.Image], batch_size: int = 256) -> np.ndarray:
    """Normalised image embeddings (images x embedding size, float32), a batch decoded at a time."""
    device = next(network.parameters()).device
    features, batch = [], []

    def flush() -> None:
        with torch.no_grad():
            encoded = network.encode_image(torch.stack([preprocess(image) for image in batch]).to(device))
        features.append(torch.nn.functional.normalize(encoded.float(), dim=-1).cpu().numpy())
        batch.clear()

    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return np.concatenate(features) if features else np.zeros((0, 0), np.float32)  # callers check for no images


def probabilities(features: np.ndarray, weights: torch.Tensor, chunk: int = 4096) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, softmax probabilities of `chunk` images x classes), chunk by chunk."""
    for start in range(0, len(features), chunk):
        with torch.no_grad():
            logits = LOGIT_SCALE * torch.from_numpy(features[start:start + chunk]).to(weights.device) @ weights.float()
        yield start, logits.softmax(dim=-1).cpu().numpy()


def top_k(features: np.ndarray, weights: torch.Tensor, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the k best class indices and their probabilities."""
    k = min(k, weights.shape[1])
    ids, scores = np.zeros((len(features), k), np.int64), np.zeros((len(features), k), np.float32)
    for start, chunk in probabilities(features, weights):
        best = np.argsort(-chunk, axis=1, kind="stable")[:, :k]
        ids[start:start + len(chunk)], scores[start:start + len(chunk)] = best, np.take_along_axis(chunk, best, 1)
    return ids, scores
