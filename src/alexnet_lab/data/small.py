"""The small datasets of the paper's Figure 1 (CIFAR-10) and of LeNet-5 (MNIST), held in memory, read by
torchvision's dataset classes from what its downloads leave under ``data.root`` (README): ``cifar-10-batches-py/``
(python pickles of 10000 x 3072 uint8 rows, R, G and B planes) and ``MNIST/raw/`` (IDX files). The generated
samples (``data=cifar10_sample``, ``mnist_sample``) are files of the same formats with images of their own, so
CIFAR-10 is read without torchvision's check of the official files' md5 sums (:class:`CIFAR10Files`).

The test split is the validation split. Pixels are 0..255 minus the training set's mean image, as cuda-convnet's
CIFAR data provider does; MNIST's 28x28 digits are padded by 2 zeros to LeNet-5's 32x32.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from annotated_types import Ge
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, MNIST

from alexnet_lab.data.base import ClassificationData, Split, Use
from alexnet_lab.data.generated import picture
from alexnet_lab.declare import PositiveInt, Seed, checked
from alexnet_lab.errors import UserError

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = [name for name, _ in CIFAR10.train_list]
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MNIST_FILES = {  # MNIST/raw/ under the root
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_PAD = 2  # LeNet-5's 32x32 input from MNIST's 28x28 digits


class CIFAR10Files(CIFAR10):
    """torchvision's CIFAR10 for any files of its format: their md5 sums are not checked against the official
    files'."""

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


def read_split(dataset: str, root: str | Path, split: str) -> Split:
    """``split`` ("train" or "val") of CIFAR-10 or MNIST under ``root``, through torchvision's class."""
    train = split == "train"
    try:
        if dataset == "cifar10":
            found = CIFAR10Files(str(root), train=train)
            return Split(torch.from_numpy(found.data).permute(0, 3, 1, 2).contiguous(),
                         torch.tensor(found.targets), list(found.classes))  # fmt: skip
        digits = MNIST(str(root), train=train)
    except RuntimeError as error:
        writes = "CIFAR10" if dataset == "cifar10" else "MNIST"
        raise UserError(
            f"data.root={root} holds no {dataset} files ({error}): give the folder that "
            f"torchvision.datasets.{writes}('{root}', download=True) writes into"
        ) from None
    images = torch.nn.functional.pad(digits.data, (MNIST_PAD,) * 4)[:, None]
    return Split(images, digits.targets, [str(d) for d in range(10)])


def write_cifar10(
    root: str | Path, train_per_class: PositiveInt = 50, val_per_class: PositiveInt = 10, seed: Seed = 0
) -> Path:
    """A small CIFAR-10 in the official format under ``root/cifar-10-batches-py``: the generated sample's pictures
    (alexnet_lab.data.generated.picture), 32x32, so that a short training learns."""
    folder = Path(root) / CIFAR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def images(per_class: int) -> tuple[np.ndarray, list[int]]:  # rows of R, G and B planes
        labels = [int(c) for c in rng.permutation(np.repeat(np.arange(10), per_class))]
        pictures = [picture(rng, c, 10, 32, periods=(5, 7)) for c in labels]
        return np.stack([p.transpose(2, 0, 1).reshape(-1) for p in pictures]), labels

    train, train_labels = images(train_per_class)
    parts = np.array_split(np.arange(len(train_labels)), len(CIFAR_TRAIN))
    batches = [
        (name, train[part], [train_labels[i] for i in part]) for name, part in zip(CIFAR_TRAIN, parts, strict=True)
    ]
    files = {name: {"batch_label": name, "labels": labels, "data": data,
                    "filenames": [f"{name}_{i}.png" for i in range(len(labels))]}
             for name, data, labels in [*batches, ("test_batch", *images(val_per_class))]}  # fmt: skip
    files["batches.meta"] = {"label_names": CIFAR_CLASSES, "num_cases_per_batch": len(parts[0]), "num_vis": 3072}
    for name, content in files.items():
        (folder / name).write_bytes(pickle.dumps(content, protocol=2))
    return Path(root)


# -- MNIST -------------------------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: two zero bytes, 0x08 (unsigned bytes), the number of dimensions, each size as 4 big-endian
    bytes, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(
    root: str | Path, train_per_class: PositiveInt = 50, val_per_class: PositiveInt = 10, seed: Seed = 0
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
        write_idx(folder / image_name, np.stack(digits))
        write_idx(folder / label_name, labels.astype(np.uint8))
    return Path(root)


IMAGE_SHAPES = {"cifar10": (3, 32), "mnist": (1, 32)}  # (channels, size) of the net's input


# -- the data module ---------------------------------------------------------------------------------------------
class SmallImageDataModule(ClassificationData):
    """CIFAR-10 or MNIST (``dataset``) in memory. The uint8 pixels travel to the device and the training set's
    mean image is subtracted there. ``sample``: ``write_cifar10`` or ``write_mnist`` with their arguments."""

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
            raise UserError(f"no data root: set data.root=DIR (the folder torchvision's {dataset} download wrote)")
        self.dataset_name, self.root, self.sample = dataset, Path(root).expanduser(), sample
        self.image_shape = IMAGE_SHAPES[dataset]
        self.mean_image: torch.Tensor | None = None

    def read_split(self, name: str) -> Split:
        return read_split(self.dataset_name, self.root, name)

    def setup(self, stage: str | None = None) -> None:
        if self.mean_image is not None:
            return
        assert self.device_batch  # the batch divides over the processes
        train = self.split("train")
        self.check_classes(int(train.labels.max()) + 1, self.root)
        self.mean_image = train.images.double().mean(dim=0).float()  # cuda-convnet's data_mean

    def dataset(self, split: Literal["train", "val"], use: Use) -> Dataset:
        return self.split(split)

    def net_input(self, batch: dict[str, Any], training: bool) -> torch.Tensor:
        assert self.mean_image is not None, "setup() first"
        images = batch["image"]
        return images.float() - self.mean_image.to(images.device)
