"""The small datasets of the paper's Figure 1 (CIFAR-10) and of LeNet-5 (MNIST), held in memory.

- CIFAR-10, the official python version that torchvision.datasets.CIFAR10(root, download=True) leaves:
  ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` (pickled dicts: ``data``,
  10000 x 3072 uint8 rows of R, G, B planes; ``labels``) and ``batches.meta`` (``label_names``). ``data.root``
  may be the folder holding ``cifar-10-batches-py/`` or that folder itself.
- MNIST, the official IDX files that torchvision.datasets.MNIST(root, download=True) leaves in ``MNIST/raw/``:
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, gzipped (``.gz``) or not. ``data.root`` may be the folder holding ``MNIST/raw/``
  or the folder of the files.

Both are read here, not through torchvision's classes, which check the real files' md5 sums: the tests and
the generated samples write files of exactly these formats. The test split is the validation split. Pixels
are 0..255 minus the training set's mean image, as cuda-convnet's CIFAR data provider does; MNIST's 28x28
digits are padded by 2 zeros to LeNet-5's 32x32.
"""

from __future__ import annotations

import gzip
import logging
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from annotated_types import Ge
from torch.utils.data import Dataset

from alexnet_lab.data.base import ClassificationData, Use
from alexnet_lab.data.layouts import DataRootError
from alexnet_lab.declare import PositiveInt, Seed, checked
from alexnet_lab.errors import UserError
from alexnet_lab.files import atomic_dir, create_once

log = logging.getLogger(__name__)

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_FILES = (*CIFAR_TRAIN, "test_batch", "batches.meta")
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_PAD = 2  # LeNet-5's 32x32 input from MNIST's 28x28 digits


class Split:
    """uint8 images (N, C, H, W) and int64 labels of one split, with the dataset's class names."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> None:
        self.images, self.labels, self.class_names = images, labels, class_names

    def __len__(self) -> int:
        return len(self.labels)


# -- CIFAR-10 ----------------------------------------------------------------------------------------------------
def cifar_dir(root: str | Path) -> Path:
    root = Path(root)
    for folder in (root / CIFAR_DIR, root):
        if all((folder / name).is_file() for name in CIFAR_FILES):
            return folder
    raise DataRootError(
        f"data root {root} holds no CIFAR-10 python batches: expected {root / CIFAR_DIR}/ (or "
        f"{root}/) with {', '.join(CIFAR_FILES)}; torchvision.datasets.CIFAR10('{root}', "
        "download=True) writes them"
    )


def _unpickle(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        loaded = pickle.load(f, encoding="latin1")  # the files were written by Python 2
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in loaded.items()}


def read_cifar10(root: str | Path, split: str) -> Split:
    folder = cifar_dir(root)
    names = [str(n) for n in _unpickle(folder / "batches.meta")["label_names"]]
    batches = [_unpickle(folder / name) for name in (CIFAR_TRAIN if split == "train" else ["test_batch"])]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
    return Split(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels), names)


def write_cifar10(
    root: str | Path, train_per_class: PositiveInt = 50, val_per_class: PositiveInt = 10, seed: Seed = 0
) -> Path:
    """A small CIFAR-10 in the official format under ``root/cifar-10-batches-py``: each class its own colour
    and stripe angle, with noise, so that a short training learns."""
    folder = Path(root) / CIFAR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def images(per_class: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.permutation(np.repeat(np.arange(10), per_class))
        yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
        rows = []
        for c in labels:
            angle, phase = np.pi * c / 10, rng.uniform(0, 2 * np.pi)
            wave = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / 6 + phase)
            colour = 0.5 + 0.35 * np.cos(2 * np.pi * c / 10 + np.array([0.0, 2.1, 4.2]))
            pixels = colour[:, None, None] * (0.75 + 0.25 * wave[None]) + rng.normal(0, 0.08, (3, 32, 32))
            rows.append((np.clip(pixels, 0, 1) * 255).astype(np.uint8).reshape(-1))
        return np.stack(rows), [int(c) for c in labels]

    train, train_labels = images(train_per_class)
    parts = np.array_split(np.arange(len(train_labels)), len(CIFAR_TRAIN))
    for name, part in zip(CIFAR_TRAIN, parts, strict=True):
        _pickle(
            folder / name,
            {
                "batch_label": name,
                "labels": [train_labels[i] for i in part],
                "data": train[part],
                "filenames": [f"{name}_{i}.png" for i in part],
            },
        )
    test, test_labels = images(val_per_class)
    _pickle(
        folder / "test_batch",
        {
            "batch_label": "test batch",
            "labels": test_labels,
            "data": test,
            "filenames": [f"test_{i}.png" for i in range(len(test_labels))],
        },
    )
    _pickle(
        folder / "batches.meta", {"label_names": CIFAR_CLASSES, "num_cases_per_batch": len(parts[0]), "num_vis": 3072}
    )
    return Path(root)


def _pickle(path: Path, obj: dict[str, Any]) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


# -- MNIST -------------------------------------------------------------------------------------------------------
def mnist_dir(root: str | Path) -> Path:
    root = Path(root)
    for folder in (root / "MNIST" / "raw", root):
        if all(_idx_file(folder, name) is not None for pair in MNIST_FILES.values() for name in pair):
            return folder
    names = ", ".join(name for pair in MNIST_FILES.values() for name in pair)
    raise DataRootError(
        f"data root {root} holds no MNIST IDX files: expected {root}/MNIST/raw/ (or {root}/) "
        f"with {names} (or .gz); torchvision.datasets.MNIST('{root}', download=True) writes "
        "them"
    )


def _idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file: a big-endian header (two zero bytes, type 0x08 = uint8, the number of dimensions, each size
    as 4 bytes), then the data."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise UserError(f"{path} is not an IDX file of unsigned bytes: download MNIST again")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_idx(path: Path, array: np.ndarray, gzipped: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gzipped else data)


def read_mnist(root: str | Path, split: str) -> Split:
    folder = mnist_dir(root)
    image_name, label_name = MNIST_FILES[split]
    images = read_idx(_idx_file(folder, image_name))  # type: ignore[arg-type]
    labels = read_idx(_idx_file(folder, label_name))  # type: ignore[arg-type]
    padded = np.pad(images, ((0, 0), (MNIST_PAD, MNIST_PAD), (MNIST_PAD, MNIST_PAD)))
    return Split(
        torch.from_numpy(padded[:, None].copy()), torch.from_numpy(labels.astype(np.int64)), [str(d) for d in range(10)]
    )


def write_mnist(
    root: str | Path,
    train_per_class: PositiveInt = 50,
    val_per_class: PositiveInt = 10,
    seed: Seed = 0,
    gzipped: bool = False,
) -> Path:
    """A small MNIST in the official IDX format under ``root/MNIST/raw``: each digit a bar at its own angle and
    place, with noise."""
    folder = Path(root) / "MNIST" / "raw"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), per_class))
        digits = []
        for d in labels:
            angle = np.pi * d / 10
            distance = np.abs((xx - 14) * np.sin(angle) - (yy - 14) * np.cos(angle) - rng.normal(0, 1))
            stroke = np.exp(-(distance**2) / 4) * (np.hypot(xx - 14, yy - 14) < 6 + d)
            digits.append(np.clip(stroke * 255 + rng.normal(0, 20, (28, 28)), 0, 255).astype(np.uint8))
        image_name, label_name = MNIST_FILES[split]
        write_idx(folder / (image_name + (".gz" if gzipped else "")), np.stack(digits), gzipped)
        write_idx(folder / (label_name + (".gz" if gzipped else "")), labels.astype(np.uint8), gzipped)
    return Path(root)


READERS = {"cifar10": read_cifar10, "mnist": read_mnist}
IMAGE_SHAPES = {"cifar10": (3, 32), "mnist": (1, 32)}  # (channels, size) of the net's input


# -- the data module ---------------------------------------------------------------------------------------------
class _Indexed(Dataset):
    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        i = item[0] if isinstance(item, tuple) else item  # (index, augmentation seed): no augmentation here
        return {"image": self.split.images[i], "label": self.split.labels[i]}


class SmallImageDataModule(ClassificationData):
    """CIFAR-10 or MNIST (``dataset``) in memory. The uint8 pixels travel to the device and the training set's
    mean image is subtracted there.

    ``sample``: writes a generated copy into a folder (``write_cifar10`` / ``write_mnist`` with their
    arguments); when given, ``root`` is generated on first use.
    """

    @checked
    def __init__(
        self,
        dataset: Literal["cifar10", "mnist"],
        root: str | None,
        num_classes: PositiveInt = 10,
        batch_size: PositiveInt = 128,
        num_workers: Annotated[int, Ge(0)] = 0,
        seed: Seed = 0,
        sample: Callable[[Path], Any] | None = None,
    ) -> None:
        super().__init__(num_classes, batch_size, num_workers, seed)
        if not root:
            raise DataRootError(f"no data root: set data.root=DIR (the folder torchvision's {dataset} download wrote)")
        self.dataset_name, self.root, self.sample = dataset, Path(root).expanduser(), sample
        self.image_shape = IMAGE_SHAPES[dataset]
        self.mean_image: torch.Tensor | None = None

    def prepare_data(self) -> None:
        if self.sample is not None:  # jobs that start together: one writes, the others wait for it
            create_once(self.root, self._write_sample)

    def _write_sample(self, root: Path) -> None:
        log.info("writing the generated %s sample to %s", self.dataset_name, root)
        atomic_dir(root, self.sample)  # type: ignore[arg-type]

    def read_split(self, name: str) -> Split:
        return READERS[self.dataset_name](self.root, name)

    def setup(self, stage: str | None = None) -> None:
        if self.mean_image is not None:
            return
        assert self.device_batch  # the batch divides over the processes
        train = self.split("train")
        self.check_classes(int(train.labels.max()) + 1, self.root)
        self.mean_image = train.images.double().mean(dim=0).float()  # cuda-convnet's data_mean

    def dataset(self, split: Literal["train", "val"], use: Use) -> Dataset:
        return _Indexed(self.split(split))

    def net_input(self, batch: dict[str, Any], training: bool) -> torch.Tensor:
        assert self.mean_image is not None, "setup() first"
        images = batch["image"]
        return images.float() - self.mean_image.to(images.device)
