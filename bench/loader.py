"""Loader throughput: (a) torchvision ImageFolder + PIL, (b) our raw-layout loader, (c) our prepared shards.

    python bench/loader.py                 # generates ImageNet-like JPEGs (about 400x350, quality 90)
    python bench/loader.py --root DIR      # any folders-layout dataset (DIR/train/<wnid>/*.JPEG)

All apply the paper's training transform (short side 256, centre 256x256, random 227x227 crop, random flip)
and give uint8 batches, with the same worker count and batch size. (a) decodes with PIL and transforms the
uint8 tensor (torchvision's vectorised resize), the faster of two baselines; (a') transforms the PIL image.
Mean subtraction and the PCA lighting run on the device in training, so they are not part of a loader.
Prints images/s and images/s per core for each; the last line is the ratio (c)/(a). The loaders are timed in
alternating rounds, and each one's best round counts.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import datasets, transforms
from torchvision.transforms import v2

from alexnet_lab.data.imagenet import ImageDataset, collate
from alexnet_lab.data.layouts import read_split
from alexnet_lab.data.prepared import (
    CHROMA_DEFAULT,
    QUALITY,
    PreparedDataset,
    ShardReader,
    prepare,
)
from alexnet_lab.data.sampling import ResumableSampler
from alexnet_lab.data.transforms import IMAGE_SIZE, Crops
from alexnet_lab.models.alexnet import PAPER_INPUT_SIZE


def generate(root: Path, images: int, classes: int = 10, seed: int = 0) -> Path:
    """JPEGs of ImageNet-like sizes and content (smooth shapes plus sensor-like noise), quality 90."""
    rng = np.random.default_rng(seed)
    for i in range(images + max(images // 10, 1)):  # and a tenth as many for val, which preparation needs too
        w, h = int(rng.integers(300, 500)), int(rng.integers(250, 450))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        base = rng.uniform(0, 255, 3) * (0.5 + 0.5 * np.sin(xx[..., None] / rng.uniform(8, 40) + yy[..., None] /
                                                             rng.uniform(8, 40) + rng.uniform(0, 6, 3)))  # fmt: skip
        pixels = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        label = i % classes if i < images else (i - images) % min(classes, images)  # val: classes that train has
        folder = root / ("train" if i < images else "val") / f"n{label:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"img_{i:06d}.JPEG", quality=90)
    return root


def to_dict(sample: tuple[torch.Tensor, int]) -> dict:
    return {"image": sample[0], "label": sample[1]}


def loader(dataset: Dataset, sampler: Sampler, workers: int, batch: int) -> DataLoader:
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, collate_fn=collate,
                        persistent_workers=workers > 0, drop_last=False)  # fmt: skip
    for _ in loader:  # warm-up, a whole epoch: worker start-up and the page cache
        pass
    return loader


def measure(loader: DataLoader, min_images: int) -> float:
    seen, start = 0, time.perf_counter()
    while seen < min_images:
        for batch_ in loader:
            seen += int(batch_["label"].numel())
    return seen / (time.perf_counter() - start)


class FolderDataset(datasets.ImageFolder):
    def __getitem__(self, index: int) -> dict:
        image, label = super().__getitem__(index)
        return {"image": image, "label": label}


def compared(root: Path, prepared: Path, exact_dct: bool) -> dict[str, tuple[Dataset, Sampler]]:
    """The four loaders' datasets over ``root``'s training images, each with its sampler (the same order)."""
    paper = v2.Compose([v2.PILToTensor(), v2.Resize(IMAGE_SIZE, antialias=True), v2.CenterCrop(IMAGE_SIZE),
                        v2.RandomCrop(PAPER_INPUT_SIZE), v2.RandomHorizontalFlip()])  # fmt: skip
    folder = FolderDataset(str(root / "train"), transform=paper)
    # the same transforms done by PIL on the image, as torchvision's ImageNet examples do: slower here
    on_pil = transforms.Compose([transforms.Resize(IMAGE_SIZE), transforms.CenterCrop(IMAGE_SIZE),
                                 transforms.RandomCrop(PAPER_INPUT_SIZE), transforms.RandomHorizontalFlip(),
                                 transforms.PILToTensor()])  # fmt: skip
    folder_pil = FolderDataset(str(root / "train"), transform=on_pil)
    ours = ImageDataset(read_split(root, "train").samples, Crops("train"))
    shards = PreparedDataset(ShardReader(prepared, "train"), Crops("train"), fast_dct=not exact_dct)

    def one_rank(size: int) -> ResumableSampler:
        return ResumableSampler(size, num_replicas=1, rank=0, seed=0)

    return {
        "(a) ImageFolder + PIL": (folder, ResumableIndices(len(folder))),
        "(a') ... with PIL transforms": (folder_pil, ResumableIndices(len(folder))),
        "(b) raw layout (ours)": (ours, one_rank(len(ours))),
        "(c) prepared shards (ours)": (shards, one_rank(len(shards))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="a folders-layout dataset (default: generate one)")
    parser.add_argument("--images", type=int, default=1536, help="images to generate without --root")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--min-images", type=int, default=3072, help="images timed per loader and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; each loader's best counts")
    parser.add_argument("--quality", type=int, default=QUALITY, help="prepared JPEG quality")
    parser.add_argument("--chroma", type=int, default=CHROMA_DEFAULT, help="prepared chroma: 420/444")
    parser.add_argument("--exact-dct", action="store_true", help="decode shards with the exact IDCT")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(prefix="alexnet-lab-bench-") as tmp:
        root = args.root or generate(Path(tmp) / "raw", args.images)
        prepared = prepare(root, Path(tmp) / "prepared", quality=args.quality, chroma=args.chroma,
                           workers=os.cpu_count(), progress=False)  # fmt: skip
        print(f"{root}: {len(read_split(root, 'train').samples)} train images; workers {args.workers}, "
              f"batch {args.batch}, torch {torch.__version__}, {os.cpu_count()} cores; prepared at quality "
              f"{args.quality}, chroma {args.chroma}, {'exact' if args.exact_dct else 'fast'} IDCT")  # fmt: skip

        loaders = {name: loader(dataset, sampler, args.workers, args.batch)
                   for name, (dataset, sampler) in compared(root, prepared, args.exact_dct).items()}  # fmt: skip
        # alternate the loaders round by round and keep each one's best: a busy neighbour on a shared machine
        # then slows a round, not one loader
        best = dict.fromkeys(loaders, 0.0)
        for _ in range(args.rounds):
            for name, timed in loaders.items():
                best[name] = max(best[name], measure(timed, args.min_images))
        cores = max(args.workers, 1)
        for name, rate in best.items():
            print(f"{name:<34} {rate:9.1f} images/s  {rate / cores:8.1f} images/s per core")
        a, a_pil, b, c = best.values()
        print(f"raw vs ImageFolder: {b / a:.2f}x")
        print(f"prepared vs ImageFolder with PIL transforms: {c / a_pil:.2f}x")
        print(f"prepared vs ImageFolder: {c / a:.2f}x")


class ResumableIndices(ResumableSampler):
    """The same shuffled order as ours, as plain indices for ImageFolder."""

    def __init__(self, size: int) -> None:
        super().__init__(size, num_replicas=1, rank=0, seed=0)

    def __iter__(self) -> Iterator[int]:  # type: ignore[override]
        return (i for i, _ in super().__iter__())


if __name__ == "__main__":
    main()
