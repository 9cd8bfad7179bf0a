"""Small synthetic photos whose content depends on the species (and life stage).

Each genus has a pattern family (stripes, rings, checks, spots) and a palette; each species in
it shifts the angle, frequency and colours a little, so congeners look alike but not the same.
Every photo adds its own phase, jitter, noise and a scene (light and shade with a photograph's 1/f
spectrum: without it a perceptual hash sees only the pattern and pixel noise, and behaves as it
never does on photos), so a tiny CLIP can learn species from pixels without any two photos being
identical. edit() makes the near-duplicate copies a re-upload brings (NEAR_DUPLICATE_EDITS);
PLACEHOLDER is what a flagged photo's URL serves instead of it.
"""

from __future__ import annotations

import base64
import colorsys
import hashlib
import io

import numpy as np
from PIL import Image

PATTERNS = ("stripes", "rings", "checks", "spots")
STAGE_TRANSFORMS = {"egg": 0, "larva": 1, "pupa": 2, "adult": 3}
SCENE_CONTRAST = 0.3  # the scene's light and shade, as a share of the brightness
JPEG_QUALITY = 85
# a re-upload of the same picture: JPEG quality, size factor, brightness factor, mirrored
NEAR_DUPLICATE_EDITS = {
    "reencoded": (60, 1.0, 1.0, False),
    "resized": (JPEG_QUALITY, 0.85, 1.0, False),
    "brightened": (JPEG_QUALITY, 1.0, 1.15, False),
    "mirrored": (JPEG_QUALITY, 1.0, 1.0, True),
}
# The image a flagged photo is replaced by, as iNaturalist does: fixed bytes (a grey 64 px PNG),
# whatever the seed or image size, so that its sha256 can be denied in config.yaml
# (images.placeholder_sha256); the metadata then gives the placeholder's size, not the photo's.
PLACEHOLDER = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAEAAAABACAAAAACPAi4CAAAAPklEQVR42mM8wUAZYGIYNWDUgFEDhokBLOgC5whoMBoNx"
    "FEDRg0YNWDUgFEDRg0Yce0Do9FAHDVg1ICRagAA1DkCfkLtnCcAAAAASUVORK5CYII="
)
PLACEHOLDER_SIZE = (500, 500)


def _unit(*keys: object) -> np.random.Generator:
    digest = hashlib.sha256("|".join(map(str, keys)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def species_signature(genus_id: int, species_id: int) -> dict:
    """Pattern parameters: shared by the genus, nudged per species."""
    g, s = _unit("genus", genus_id), _unit("species", species_id)
    hue = g.uniform(0, 1)
    return {
        "pattern": PATTERNS[int(g.integers(len(PATTERNS)))],
        "angle": g.uniform(0, np.pi) + s.uniform(-0.6, 0.6),
        "freq": g.uniform(1.5, 4.0) * s.uniform(0.75, 1.3),
        "color1": colorsys.hsv_to_rgb((hue + s.uniform(-0.08, 0.08)) % 1, 0.8, 0.9),
        "color2": colorsys.hsv_to_rgb(
            (hue + 0.5 + s.uniform(-0.15, 0.15)) % 1, s.uniform(0.3, 0.9), s.uniform(0.2, 0.6)
        ),
        "center": s.uniform(-0.4, 0.4, size=2),
    }


def render(
    signature: dict, width: int, height: int, photo_id: int, stage: str | None = None
) -> np.ndarray:
    """An HxWx3 uint8 image of the signature's pattern with this photo's own noise."""
    rng = _unit("photo", photo_id)
    ys, xs = np.mgrid[-1 : 1 : complex(0, height), -1 : 1 : complex(0, width)]
    if rng.random() < 0.5:
        xs = -xs
    angle = signature["angle"] + rng.normal(0, 0.1)
    freq = signature["freq"] * rng.uniform(0.9, 1.1)
    if stage is not None:  # life stages of one species: same palette, different shape
        freq *= 1 + 0.6 * STAGE_TRANSFORMS[stage]
        angle += 0.7 * STAGE_TRANSFORMS[stage]
    u = xs * np.cos(angle) + ys * np.sin(angle)
    v = -xs * np.sin(angle) + ys * np.cos(angle)
    cx, cy = signature["center"] + rng.normal(0, 0.05, size=2)
    phase = rng.uniform(0, 2 * np.pi)
    pattern = signature["pattern"]
    if pattern == "stripes":
        field = np.sin(2 * np.pi * freq * u + phase)
    elif pattern == "rings":
        field = np.sin(2 * np.pi * freq * np.hypot(xs - cx, ys - cy) + phase)
    elif pattern == "checks":
        field = np.sign(np.sin(2 * np.pi * freq * u + phase) * np.sin(2 * np.pi * freq * v))
    else:
        field = np.cos(
            2 * np.pi * 0.4 * freq * np.hypot(np.sin(np.pi * u * 1.5), np.sin(np.pi * v * 1.5))
            + phase
        )
    mix = (field[..., None] + 1) / 2
    c1, c2 = np.array(signature["color1"]), np.array(signature["color2"])
    image = 255 * (mix * c1 + (1 - mix) * c2) * rng.uniform(0.85, 1.15)
    image *= 1 + SCENE_CONTRAST * scene(rng, height, width)[..., None]
    image += rng.normal(0, 12, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A random field with a photograph's spectrum (amplitude ~ 1/frequency), mean 0, sd 1."""
    frequency = np.hypot(
        np.fft.fftfreq(height)[:, None] * height, np.fft.rfftfreq(width)[None, :] * width
    )
    frequency[0, 0] = 1
    spectrum = (
        rng.normal(size=frequency.shape) + 1j * rng.normal(size=frequency.shape)
    ) / frequency
    spectrum[0, 0] = 0
    field = np.fft.irfft2(spectrum, s=(height, width))
    return field / field.std()


def edit(pixels: np.ndarray, kind: str) -> tuple[np.ndarray, int]:
    """A near-duplicate copy of a photo's pixels (NEAR_DUPLICATE_EDITS[kind]) and its JPEG
    quality."""
    quality, size, brightness, mirrored = NEAR_DUPLICATE_EDITS[kind]
    image = Image.fromarray(pixels)
    if size != 1:
        image = image.resize(
            (round(image.width * size), round(image.height * size)), Image.Resampling.LANCZOS
        )
    copy = np.asarray(image).astype(np.float64) * brightness
    return np.clip(copy[:, ::-1] if mirrored else copy, 0, 255).astype(np.uint8), quality


def encode(pixels: np.ndarray, image_format: str, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG, PNG or GIF bytes; the encoders are deterministic for the same input."""
    buffer = io.BytesIO()
    options = {"PNG": {"compress_level": 6}, "JPEG": {"quality": quality}, "GIF": {}}[image_format]
    Image.fromarray(pixels).save(buffer, image_format, **options)
    return buffer.getvalue()


def medium_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """The 'medium' rendition's size: the original's aspect ratio, long side `long_side`."""
    if width >= height:
        return long_side, max(8, round(long_side * height / width))
    return max(8, round(long_side * width / height)), long_side
