"""Which edited copies of a photo the near-duplicate check finds: edits as users make them on
iNaturalist (rotations, EXIF-oriented copies, crops, borders, screenshots, and the edits the check
finds today), applied with the copy on either side (in Train, or in the evaluation set), and
methods built on PDQ compared case by case (bench/near_dup.py prints the table).

A method hashes each Train image into the index (one or more codes) and each evaluation image into
queries; a copy is found when some query is within the threshold of some index code of its
original. Methods, each adding to the one before:
- today: the stored pixels, the evaluation image also mirrored (what the pipeline does);
- dihedral: what a viewer sees (EXIF orientation applied), the evaluation image in all eight
  orientations (pdqhash computes them in one pass);
- trimmed: both sides also hashed with uniform borders trimmed (where there are any);
- rotated: the evaluation image also rotated by a few degrees either way;
- cropped: the evaluation image also cropped, on a grid of crops keeping 80-95% of each side.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image, ImageOps

from workflow_scripts.images.perceptual import pdq

Picture = Image.Image
SMALL_ANGLES = (2.0, 3.5, 5.0)  # queried: each either way
CROP_SCALES = (0.95, 0.9, 0.85, 0.8)
CROP_ANCHORS = ((0.5, 0.5), (0, 0), (1, 0), (0, 1), (1, 1), (0.5, 0), (0.5, 1), (0, 0.5), (1, 0.5))
TRIM_TOLERANCE = 12  # grey levels: a JPEG's ringing along a flat border stays within it
EXIF_ORIENTATION = 0x0112
NONE = np.empty((0, 32), np.uint8)  # no codes: a part a method does not use, or nothing trimmed


def jpeg(image: Picture, quality: int = 90, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality, **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def exif_oriented(image: Picture, orientation: int) -> bytes:
    """The photo stored turned, with the EXIF Orientation tag that shows it upright (3: stored
    upside down, 6: stored turned left, 8: stored turned right)."""
    stored = image.transpose(
        {
            3: Image.Transpose.ROTATE_180,
            6: Image.Transpose.ROTATE_90,
            8: Image.Transpose.ROTATE_270,
        }[orientation]
    )
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return jpeg(stored, exif=exif)


def rotated(image: Picture, degrees: float) -> Picture:
    """Turned by a small angle, the corners filled black, the size kept (as an editor's rotate)."""
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC)


def cropped(image: Picture, keep: float, anchor: tuple[float, float]) -> Picture:
    """`keep` of each side, the kept window at `anchor` (0: left/top, 1: right/bottom)."""
    width, height = round(image.width * keep), round(image.height * keep)
    left = round((image.width - width) * anchor[0])
    top = round((image.height - height) * anchor[1])
    return image.crop((left, top, left + width, top + height))


def bordered(image: Picture, fraction: float, colour: tuple[int, int, int]) -> Picture:
    pad = round(max(image.size) * fraction)
    return ImageOps.expand(image, border=pad, fill=colour)


def screenshot(image: Picture) -> Picture:
    """Scaled to 80% on a phone's screen: a dark status bar above, a light bar below."""
    small = image.resize((round(image.width * 0.8), round(image.height * 0.8)))
    top, bottom = round(image.height * 0.06), round(image.height * 0.1)
    screen = Image.new("RGB", (small.width, small.height + top + bottom), (245, 245, 245))
    screen.paste((30, 30, 30), (0, 0, small.width, top))
    screen.paste(small, (0, top))
    return screen


# kind of edit -> [(name, the copy's bytes from the original's pixels)]
EDITS: dict[str, list[tuple[str, Callable[[Picture], bytes]]]] = {
    "exif": [(f"orientation {o}", lambda im, o=o: exif_oriented(im, o)) for o in (3, 6, 8)],
    "rotation": [
        *(
            (f"{a} degrees", lambda im, a=a: jpeg(im.rotate(a, expand=True)))
            for a in (90, 180, 270)
        ),
        *((f"{a} degrees", lambda im, a=a: jpeg(rotated(im, a))) for a in (2, -3, 5)),
    ],
    "crop>=80%": [
        (f"keep {k:.0%} at {a}", lambda im, k=k, a=a: jpeg(cropped(im, k, a)))
        for k, a in (
            (0.95, (0.5, 0.5)),
            (0.9, (0.5, 0.5)),
            (0.8, (0.5, 0.5)),
            (0.9, (0, 0)),
            (0.85, (1, 0.3)),
            (0.8, (0.2, 0.9)),
        )
    ],
    "border<=10%": [
        *(
            (f"{f:.0%} {name}", lambda im, f=f, c=c: jpeg(bordered(im, f, c)))
            for f, name, c in (
                (0.02, "white", (255, 255, 255)),
                (0.05, "black", (0, 0, 0)),
                (0.1, "white", (255, 255, 255)),
            )
        ),
        ("screenshot", lambda im: jpeg(screenshot(im))),
    ],
    "found today": [
        ("re-encoded, quality 50", lambda im: jpeg(im, 50)),
        ("resized to 50%", lambda im: jpeg(im.resize((im.width // 2, im.height // 2)))),
        ("brightened", lambda im: jpeg(Image.eval(im, lambda v: min(255, int(v * 1.2))))),
        ("grey", lambda im: jpeg(ImageOps.grayscale(im))),
        ("mirrored", lambda im: jpeg(ImageOps.mirror(im))),
    ],
}
KINDS = ("crop>=80%", "border<=10%", "rotation", "exif")  # the bench's last line


def codes(pixels: np.ndarray) -> np.ndarray:
    bits, _ = pdqhash.compute(np.ascontiguousarray(pixels))
    return np.packbits(bits.astype(np.uint8))[None]


def dihedral(pixels: np.ndarray) -> np.ndarray:
    """The PDQ hashes of the eight orientations, from one pass."""
    hashes, _ = pdqhash.compute_dihedral(np.ascontiguousarray(pixels))
    return np.packbits(np.asarray(hashes).astype(np.uint8), axis=1)


def flat(lines: np.ndarray) -> np.ndarray:
    """Which lines (rows of an (n, length, 3) array) are one colour, within TRIM_TOLERANCE."""
    return (lines.max(axis=1) - lines.min(axis=1)).max(axis=-1) <= TRIM_TOLERANCE


def trimmed(pixels: np.ndarray) -> np.ndarray | None:
    """The pixels less their outer rows and columns of one colour each (borders, a screenshot's
    bars); None where there are none (the four outer lines tell, cheaply) or little is left."""
    edges = [pixels[:1], pixels[-1:], pixels[:, :1].swapaxes(0, 1), pixels[:, -1:].swapaxes(0, 1)]
    if not any(flat(edge)[0] for edge in edges):
        return None
    kept_rows = np.flatnonzero(~flat(pixels))
    kept_columns = np.flatnonzero(~flat(pixels.swapaxes(0, 1)))
    if len(kept_rows) < 16 or len(kept_columns) < 16:
        return None
    return pixels[kept_rows[0] : kept_rows[-1] + 1, kept_columns[0] : kept_columns[-1] + 1]


def viewed(data: bytes) -> np.ndarray:
    """The image's pixels as a viewer sees them: its EXIF orientation applied."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def upright_parts(pixels: np.ndarray, level: int) -> list[np.ndarray]:
    """index_parts' list from a viewer's pixels, for levels 1 and 2."""
    inner = trimmed(pixels) if level >= 2 else None
    return [NONE, dihedral(pixels), dihedral(inner) if inner is not None else NONE]


def index_parts(data: bytes, level: int = 4) -> list[np.ndarray]:
    """A Train image's codes by method level, up to `level`: today's (the pipeline's own `pdq`: the
    stored pixels' and their mirror image's, on every side), what a viewer sees (all eight
    orientations: for the groups inside Train, as the mirror image is today), that trimmed (none
    where nothing is trimmed). Only the upright code of each is indexed (`indexed`)."""
    if level == 0:
        hashed, mirrored, _ = pdq(data)
        return [np.frombuffer(hashed + mirrored, np.uint8).reshape(2, -1)]
    return upright_parts(viewed(data), level)


def query_parts(data: bytes, level: int = 4) -> list[np.ndarray]:
    """An evaluation image's queries by method level, up to `level`: today's (stored, mirrored),
    the eight orientations of what a viewer sees, of that trimmed, small rotations, crops."""
    if level == 0:
        return index_parts(data, 0)
    pixels = viewed(data)
    parts = upright_parts(pixels, min(level, 2))
    image = Image.fromarray(pixels)
    if level >= 3:
        turned = [rotated(image, sign * angle) for angle in SMALL_ANGLES for sign in (1, -1)]
        parts.append(np.concatenate([codes(np.asarray(picture)) for picture in turned]))
    if level >= 4:
        crops = [cropped(image, keep, at) for keep in CROP_SCALES for at in CROP_ANCHORS]
        parts.append(np.concatenate([codes(np.asarray(picture)) for picture in crops]))
    return parts


def indexed(parts: list[np.ndarray], level: int) -> np.ndarray:
    """The codes a method puts in the index: the upright hash of each image it hashed."""
    if level == 0:
        return parts[0][:1]
    return np.concatenate([part[:1] for part in parts[1 : min(level, 2) + 1]])


METHODS = ("today", "dihedral", "trimmed", "rotated", "cropped")
CHOSEN = "rotated"  # docs/images.md: near duplicates (the crop grid's recall is not worth its cost)


def queried(parts: list[np.ndarray], level: int) -> np.ndarray:
    """The codes a method queries with, from query_parts' list: today's alone (level 0), or those
    of levels 1 to `level`."""
    return parts[0] if level == 0 else np.concatenate(parts[1 : level + 1])


def distance(left: np.ndarray, right: np.ndarray) -> int:
    """The smallest Hamming distance between any row of two arrays of packed codes."""
    return int(np.unpackbits(left[:, None] ^ right[None], axis=2).sum(axis=2).min())


def recall_table(originals: list[bytes], threshold: int) -> dict[str, dict[str, list[bool]]]:
    """{kind: {method: [found?] over originals x edits x the copy's side]}}."""
    table: dict[str, dict[str, list[bool]]] = {kind: {m: [] for m in METHODS} for kind in EDITS}
    for data in originals:
        with Image.open(io.BytesIO(data)) as image:
            original = image.convert("RGB")
        parts = [query_parts(data, 0), query_parts(data)]
        for kind, edits in EDITS.items():
            for _, make in edits:
                copy = make(original)
                copy_parts = [query_parts(copy, 0), query_parts(copy)]
                for level, method in enumerate(METHODS):
                    ours, theirs = parts[level > 0], copy_parts[level > 0]
                    table[kind][method] += [
                        # the copy in Train, then the copy in the evaluation set
                        distance(indexed(theirs, level), queried(ours, level)) <= threshold,
                        distance(indexed(ours, level), queried(theirs, level)) <= threshold,
                    ]
    return table


def real_photos(long_side: int = 500) -> dict[str, bytes]:
    """Real photographs that ship inside installed packages (scikit-image's data module,
    scikit-learn's and matplotlib's sample images), as iNaturalist's medium JPEGs: the long side
    `long_side`, quality 85. Drawings, charts and rendered figures are left out."""
    import matplotlib
    import skimage.data
    import sklearn.datasets

    folders = {
        Path(skimage.data.__file__).parent: (
            "astronaut.png brick.png camera.png cell.png chelsea.png clock_motion.png coffee.png "
            "coins.png grass.png gravel.png hubble_deep_field.jpg ihc.png moon.png "
            "motorcycle_left.png motorcycle_right.png page.png retina.jpg rocket.jpg text.png"
        ),
        Path(sklearn.datasets.__file__).parent / "images": "china.jpg flower.jpg",
        Path(matplotlib.get_data_path()) / "sample_data": "grace_hopper.jpg",
    }
    photos = {}
    for folder, names in folders.items():
        for name in names.split():
            with Image.open(folder / name) as image:
                picture = image.convert("RGB")
            picture.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
            photos[name.rsplit(".", 1)[0]] = jpeg(picture, 85)
    return photos


def cost_ms(images: list[bytes], hashing: Callable[[bytes], np.ndarray]) -> float:
    """Milliseconds per image of one side's hashing, decoding included."""
    started = time.perf_counter()
    for data in images:
        hashing(data)
    return 1000 * (time.perf_counter() - started) / len(images)


def false_matches(photos: dict[str, bytes], level: int) -> list[tuple[str, str, int]]:
    """(Train photo, evaluation photo, distance) for every ordered pair of distinct photos under
    one method, nearest first."""
    parts = {name: query_parts(data, level) for name, data in photos.items()}
    index = {name: indexed(found, level) for name, found in parts.items()}
    queries = {name: queried(found, level) for name, found in parts.items()}
    return sorted(
        ((a, b, distance(index[a], queries[b])) for a in photos for b in photos if a != b),
        key=lambda pair: pair[2],
    )
