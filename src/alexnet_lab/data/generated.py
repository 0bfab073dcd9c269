"""A tiny ImageNet-format dataset, generated deterministically: the quickstart's and the tests' data.

Ten real wnids, JPEGs of varied sizes and aspect ratios, and the real set's quirks (a grayscale JPEG, a CMYK
JPEG, a PNG under a .JPEG name). Each class has its own colour and stripe orientation, so a short CPU
training clearly learns. It is written in the folder layout (tests/sample_layouts.py writes the other two).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from annotated_types import Interval
from PIL import Image

from alexnet_lab.data.layouts import SYNSET_MAPPING
from alexnet_lab.declare import PositiveInt, Seed, checked

# The first ten ILSVRC-2012 classes, sorted by wnid.
CLASSES = {
    "n01440764": "tench, Tinca tinca",
    "n01443537": "goldfish, Carassius auratus",
    "n01484850": "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias",
    "n01491361": "tiger shark, Galeocerdo cuvieri",
    "n01494475": "hammerhead, hammerhead shark",
    "n01496331": "electric ray, crampfish, numbfish, torpedo",
    "n01498041": "stingray",
    "n01514668": "cock",
    "n01514859": "hen",
    "n01518878": "ostrich, Struthio camelus",
}


@dataclass
class SampleImage:
    wnid: str
    name: str  # file name, the same in every layout
    data: bytes


def picture(rng: np.random.Generator, label: int, num_classes: int, size: int | None = None,
            periods: tuple[float, float] = (14, 22)) -> np.ndarray:  # fmt: skip
    """An RGB array (H, W, 3) whose colour and stripe angle depend on the class, with random phase, stripe period,
    brightness and noise, and a random size unless ``size`` (a square's side) is given."""
    width = int(rng.integers(180, 520))
    height = int(width * rng.uniform(0.6, 1.5))
    yy, xx = np.mgrid[0 : size or height, 0 : size or width].astype(np.float32)
    angle = np.pi * label / num_classes  # stripe orientation in [0, pi)
    period = rng.uniform(*periods)
    wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period + rng.uniform(0, 2 * np.pi))
    hue = 2 * np.pi * label / num_classes
    colour = 0.5 + 0.35 * np.cos(hue + np.array([0.0, 2.1, 4.2]))  # RGB, class-specific
    brightness = rng.uniform(0.7, 1.1)
    pixels = (colour * brightness)[None, None, :] * (0.75 + 0.25 * wave[..., None])
    pixels += rng.normal(0, 0.06, pixels.shape)
    return (np.clip(pixels, 0, 1) * 255).astype(np.uint8)


ENCODINGS = {"grayscale": ("L", "JPEG"), "cmyk": ("CMYK", "JPEG"), "png": ("RGB", "PNG"), None: ("RGB", "JPEG")}


def _encode(pixels: np.ndarray, quirk: str | None) -> bytes:
    mode, form = ENCODINGS[quirk]  # (PIL's mode, file format)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, form, **({"quality": 90} if form == "JPEG" else {}))
    return buffer.getvalue()


# Real ImageNet has these in its training set (e.g. n02105855_2933.JPEG is a PNG).
QUIRKS = {(0, 0): "grayscale", (1, 0): "cmyk", (2, 0): "png"}


def generate(
    num_classes: int = 10, train_per_class: int = 40, val_per_class: int = 10, seed: int = 0
) -> tuple[list[SampleImage], list[SampleImage]]:
    rng = np.random.default_rng(seed)
    wnids = sorted(CLASSES)[:num_classes]
    train = [
        SampleImage(w, f"{w}_{i}.JPEG", _encode(picture(rng, c, num_classes), QUIRKS.get((c, i))))
        for c, w in enumerate(wnids)
        for i in range(train_per_class)
    ]
    val_labels = rng.permutation(np.repeat(np.arange(num_classes), val_per_class))  # classes mixed, as in ILSVRC
    val = [
        SampleImage(wnids[c], f"ILSVRC2012_val_{k + 1:08d}.JPEG", _encode(picture(rng, int(c), num_classes), None))
        for k, c in enumerate(val_labels)
    ]
    return train, val


@checked
def write_sample(
    root: str | Path,
    num_classes: Annotated[int, Interval(ge=1, le=len(CLASSES))] = 10,
    train_per_class: PositiveInt = 40,
    val_per_class: PositiveInt = 10,
    seed: Seed = 0,
) -> Path:
    """Generate the sample and write it under ``root`` in the folder layout."""
    train, val = generate(num_classes, train_per_class, val_per_class, seed)
    root = Path(root)
    for split, images in (("train", train), ("val", val)):
        for im in images:
            (root / split / im.wnid).mkdir(parents=True, exist_ok=True)
            (root / split / im.wnid / im.name).write_bytes(im.data)
    (root / SYNSET_MAPPING).write_text("".join(f"{w} {CLASSES[w]}\n" for w in sorted({im.wnid for im in train})))
    return root
