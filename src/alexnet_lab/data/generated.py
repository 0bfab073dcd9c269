"""A tiny ImageNet-format dataset, generated deterministically: the quickstart's and the tests' data.

Ten real wnids, JPEGs of varied sizes and aspect ratios, and the real set's quirks (a grayscale JPEG, a CMYK
JPEG, a PNG under a .JPEG name). Each class has its own colour and stripe orientation, so a short CPU
training clearly learns. Any of the three on-disk layouts can be written.
"""

from __future__ import annotations

import csv
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from annotated_types import Interval
from PIL import Image

from alexnet_lab.data.layouts import ARCHIVES, KAGGLE_BASE, KAGGLE_VAL_CSV, SYNSET_MAPPING, Layout
from alexnet_lab.declare import PositiveInt, Seed, checked
from alexnet_lab.files import atomic_dir

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


def _picture(rng: np.random.Generator, label: int, num_classes: int) -> np.ndarray:
    """An RGB array whose colour and stripe angle depend on the class, with random size, phase and noise."""
    width = int(rng.integers(180, 520))
    height = int(width * rng.uniform(0.6, 1.5))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = np.pi * label / num_classes  # stripe orientation in [0, pi)
    period = rng.uniform(14, 22)
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
        SampleImage(w, f"{w}_{i}.JPEG", _encode(_picture(rng, c, num_classes), QUIRKS.get((c, i))))
        for c, w in enumerate(wnids)
        for i in range(train_per_class)
    ]
    val_labels = rng.permutation(np.repeat(np.arange(num_classes), val_per_class))  # classes mixed, as in ILSVRC
    val = [
        SampleImage(wnids[c], f"ILSVRC2012_val_{k + 1:08d}.JPEG", _encode(_picture(rng, int(c), num_classes), None))
        for k, c in enumerate(val_labels)
    ]
    return train, val


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _tar_bytes(members: list[tuple[str, bytes]], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:  # type: ignore[call-overload]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _meta_mat(wnids: list[str]) -> bytes:
    """The devkit's meta.mat: a struct array of synsets, leaves first, as torchvision reads it.

    ILSVRC2012_ID is not the sorted-wnid order (as in the real devkit), and one inner synset with children is
    included, so a reader that confuses the two orders or keeps non-leaf synsets is caught.
    """
    from scipy.io import savemat

    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children", "wordnet_height",
              "num_train_images"]  # fmt: skip
    rows = [(len(wnids) - i, w, CLASSES[w], "", 0, np.zeros(0), 0, 40) for i, w in enumerate(wnids)]
    rows.append((len(wnids) + 1, "n01473806", "aquatic vertebrate", "", 2, np.array([1, 2]), 1, 0))
    synsets = np.empty(len(rows), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        synsets[i] = row
    buffer = io.BytesIO()
    savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def _write_archives(root: Path, train: list[SampleImage], val: list[SampleImage], wnids: list[str]) -> None:
    inner = [(f"{w}.tar", _tar_bytes([(im.name, im.data) for im in train if im.wnid == w])) for w in wnids]
    _write(root / ARCHIVES[0], _tar_bytes(inner))
    _write(root / ARCHIVES[1], _tar_bytes([(im.name, im.data) for im in val]))
    ids = {w: len(wnids) - i for i, w in enumerate(wnids)}  # the same ILSVRC2012_IDs as in meta.mat
    truth = "".join(f"{ids[im.wnid]}\n" for im in sorted(val, key=lambda im: im.name))
    devkit = [("meta.mat", _meta_mat(wnids)), ("ILSVRC2012_validation_ground_truth.txt", truth.encode())]
    _write(root / ARCHIVES[2], _tar_bytes([(f"ILSVRC2012_devkit_t12/data/{n}", d) for n, d in devkit], mode="w:gz"))


@checked
def write_layout(
    root: str | Path,
    layout: Layout = "folders",
    num_classes: Annotated[int, Interval(ge=1, le=len(CLASSES))] = 10,
    train_per_class: PositiveInt = 40,
    val_per_class: PositiveInt = 10,
    seed: Seed = 0,
) -> Path:
    """Generate the sample and write it under ``root`` in ``layout``, into a temp folder renamed at the end, so
    an interrupted run never leaves a half-written dataset behind."""
    train, val = generate(num_classes, train_per_class, val_per_class, seed)
    wnids = sorted({im.wnid for im in train})

    def fill(tmp: Path) -> None:
        if layout == "archives":
            _write_archives(tmp, train, val, wnids)
        else:
            base = tmp / KAGGLE_BASE if layout == "kaggle" else tmp
            for im in train:
                _write(base / "train" / im.wnid / im.name, im.data)
            for im in val:
                _write(base / "val" / (im.wnid if layout == "folders" else "") / im.name, im.data)
            if layout == "kaggle":
                with open(tmp / KAGGLE_VAL_CSV, "w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(["ImageId", "PredictionString"])
                    writer.writerows([Path(im.name).stem, f"{im.wnid} 10 10 100 100"] for im in val)
        (tmp / SYNSET_MAPPING).write_text("".join(f"{w} {CLASSES[w]}\n" for w in wnids))

    return atomic_dir(root, fill)
