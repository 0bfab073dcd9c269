"""The generated sample (alexnet_lab.data.generated) in each of the three layouts that data.layout reads: the
package writes the folder layout; the official archives and Kaggle's layout are written here, for the tests of
their readers."""

from __future__ import annotations

import csv
import io
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from alexnet_lab.data.generated import CLASSES, SampleImage, generate, write_sample
from alexnet_lab.data.layouts import ARCHIVES, KAGGLE_BASE, KAGGLE_VAL_CSV, SYNSET_MAPPING


def write_layout(root: str | Path, layout: str = "folders", **sizes: Any) -> Path:
    """The sample under ``root`` in ``layout``; ``sizes``: write_sample's num_classes, train_per_class,
    val_per_class, seed."""
    if layout == "folders":
        return write_sample(root, **sizes)
    root = Path(root)
    train, val = generate(**sizes)
    wnids = sorted({im.wnid for im in train})
    if layout == "archives":
        _write_archives(root, train, val, wnids)
    else:
        assert layout == "kaggle", layout
        base = root / KAGGLE_BASE
        for im in train:
            _write(base / "train" / im.wnid / im.name, im.data)
        for im in val:
            _write(base / "val" / im.name, im.data)
        with open(root / KAGGLE_VAL_CSV, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["ImageId", "PredictionString"])
            writer.writerows([Path(im.name).stem, f"{im.wnid} 10 10 100 100"] for im in val)
    (root / SYNSET_MAPPING).write_text("".join(f"{w} {CLASSES[w]}\n" for w in wnids))
    return root


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
