"""The three ways ImageNet is found on disk, read into one (path, label) index.

Labels are positions in the sorted list of training wnids, so the same image gets the same label whatever the
layout (torchvision's ImageFolder sorts the same way).
"""

from __future__ import annotations

import csv
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image
from torchvision.datasets import ImageNet
from torchvision.datasets.folder import find_classes, has_file_allowed_extension, make_dataset

from alexnet_lab.errors import UserError

ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")
KAGGLE_BASE = Path("ILSVRC", "Data", "CLS-LOC")
KAGGLE_VAL_CSV = "LOC_val_solution.csv"
SYNSET_MAPPING = "LOC_synset_mapping.txt"  # "n01440764 tench, Tinca tinca", one class a line
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
Layout = Literal["folders", "archives", "kaggle"]
LAYOUTS: tuple[str, ...] = typing.get_args(Layout)

LAYOUT_HELP = (
    "expected one of: (1) folders: ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG; "
    f"(2) archives: ROOT/{{{','.join(ARCHIVES)}}}; "
    f"(3) kaggle: ROOT/{KAGGLE_BASE}/{{train/<wnid>,val}}, ROOT/{KAGGLE_VAL_CSV}, ROOT/{SYNSET_MAPPING}"
)


class BadImageError(UserError):
    pass


@dataclass
class SplitIndex:
    samples: list[tuple[str, int]]
    wnids: list[str]
    class_names: list[str]


def detect_layout(root: str | os.PathLike[str], key: str = "data.root") -> str:
    """The layout of the ImageNet copy at ``root``; ``key`` is the config key that gave it, for the errors."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{key}={root} does not exist: set {key}=DIR (or IMAGENET_ROOT); {LAYOUT_HELP}")
    if all((root / name).is_file() for name in ARCHIVES):
        return "archives"
    kaggle = (root / KAGGLE_BASE / "train").is_dir() and (root / KAGGLE_VAL_CSV).is_file()
    if kaggle or ((root / "train").is_dir() and (root / "val").is_dir()):
        _class_folders(root / KAGGLE_BASE / "train" if kaggle else root / "train")  # none: refused now, not at setup
        return "kaggle" if kaggle else "folders"
    raise UserError(f"{key}={root} holds no ImageNet layout I know; {LAYOUT_HELP}")


def _class_folders(train_dir: Path) -> list[str]:
    try:
        return find_classes(train_dir)[0]  # sorted, as ImageFolder's
    except FileNotFoundError:
        raise UserError(f"{train_dir} has no class folders; {LAYOUT_HELP}") from None


def _read_names(mapping: Path, wnids: list[str]) -> list[str]:
    if not mapping.is_file():
        return list(wnids)
    names = {}
    for line in mapping.read_text().splitlines():
        wnid, _, name = line.partition(" ")
        names[wnid] = name.strip()
    return [names.get(w, w) for w in wnids]


def _read_folders(root: Path, split: str) -> SplitIndex:
    wnids = _class_folders(root / "train")
    samples = make_dataset(root / split, {w: i for i, w in enumerate(wnids)}, IMAGE_SUFFIXES, allow_empty=True)
    return SplitIndex(samples, wnids, _read_names(root / SYNSET_MAPPING, wnids))


def _read_archives(root: Path, split: str) -> SplitIndex:
    # torchvision parses the devkit (meta.mat, validation ground truth) and unpacks the archives once.
    dataset = ImageNet(str(root), split=split)  # its classes: a tuple of names each, from the devkit's meta.mat
    names = [", ".join(names) for names in dataset.classes]
    return SplitIndex([(p, int(t)) for p, t in dataset.samples], list(dataset.wnids), names)


def _read_kaggle(root: Path, split: str) -> SplitIndex:
    base = root / KAGGLE_BASE
    wnids = _class_folders(base / "train")
    index = {w: i for i, w in enumerate(wnids)}
    names = _read_names(root / SYNSET_MAPPING, wnids)
    if split == "train":
        return SplitIndex(make_dataset(base / "train", index, IMAGE_SUFFIXES, allow_empty=True), wnids, names)
    labels = {}
    with open(root / KAGGLE_VAL_CSV, newline="") as f:
        for row in csv.DictReader(f):
            labels[row["ImageId"]] = row["PredictionString"].split()[0]  # "wnid x0 y0 x1 y1 [wnid ...]"
    samples = []
    for path in sorted(p for p in (base / "val").iterdir() if has_file_allowed_extension(p.name, IMAGE_SUFFIXES)):
        wnid = labels.get(path.stem)
        if wnid is None:
            raise UserError(f"{path} has no row in {root / KAGGLE_VAL_CSV}: the file does not match the images")
        samples.append((str(path), index[wnid]))
    return SplitIndex(samples, wnids, names)


READERS = {"folders": _read_folders, "archives": _read_archives, "kaggle": _read_kaggle}


def read_split(root: str | os.PathLike[str], split: str, layout: str = "auto") -> SplitIndex:
    """The (path, label) list of ``split`` ("train" or "val") under ``root``."""
    if layout == "auto":
        layout = detect_layout(root)
    elif layout not in READERS:
        raise UserError(f"unknown data.layout={layout!r}: use auto, {', '.join(LAYOUTS)}")
    index = READERS[layout](Path(root), split)
    if not index.samples:
        raise UserError(f"no {split} images found under {root} ({layout} layout); {LAYOUT_HELP}")
    return index


def load_rgb(path: str) -> Image.Image:
    """Decode any image ImageNet holds (grayscale, CMYK, PNG under a .JPEG name) to 3-channel RGB."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadImageError(
            f"cannot decode image {path}: {e}; replace the file, or set data.skip_bad_images=true to skip "
            "and count unreadable files"
        ) from e
