"""ImageNet as the paper used it, in any on-disk layout, prepared shards, or the generated sample."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from annotated_types import Ge
from torch.utils.data import Dataset
from torch.utils.data.dataloader import default_collate

from alexnet_lab.data.base import ClassificationData, Use
from alexnet_lab.data.layouts import (
    BadImageError,
    Layout,
    SplitIndex,
    detect_layout,
    load_rgb,
    read_split,
)
from alexnet_lab.data.prepared import STATS_FILE, PreparedDataset, ShardReader, is_prepared, read_meta
from alexnet_lab.data.stats import compute_stats, load_stats, save_stats, subset
from alexnet_lab.data.transforms import IMAGE_SIZE, LIGHTING_STD, CropMode, Crops, DeviceNormalizer, PcaLighting
from alexnet_lab.declare import PositiveInt, Seed, checked
from alexnet_lab.errors import UserError
from alexnet_lab.files import create_once
from alexnet_lab.models.alexnet import PAPER_INPUT_SIZE, InputSize

log = logging.getLogger(__name__)

TestCrops = Literal[1, 10]  # section 4.1: the centre crop, or the ten patches with their softmax averaged


class ImageDataset(Dataset):
    """(path, label) pairs -> {"image": uint8 crop(s), "geometry", "label"}; a bad file raises with its path,
    or, with ``skip_bad``, comes back as {"skipped": path} for the collate function to count."""

    def __init__(self, samples: list[tuple[str, int]], transform: Crops, skip_bad: bool = False) -> None:
        self.samples, self.transform, self.skip_bad = samples, transform, skip_bad

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        """``item``: an index, or (index, augmentation seed) from the training sampler."""
        i, seed = item if isinstance(item, tuple) else (item, None)
        path, label = self.samples[i]
        try:
            image = load_rgb(path)
        except BadImageError:
            if self.skip_bad:
                return {"skipped": path}
            raise
        return {**self.transform(image, seed), "label": label}


def collate(items: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
    if isinstance(items, dict):
        return items  # already a batch: PreparedDataset.__getitems__
    good = [item for item in items if "skipped" not in item]
    batch = default_collate(good) if good else {}
    batch["skipped"] = [item["skipped"] for item in items if "skipped" in item]
    return batch


class ImageNetDataModule(ClassificationData):
    """ImageNet from ``root`` in any layout of :mod:`alexnet_lab.data.layouts`, or prepared shards (src/prepare.py).
    conf/data/imagenet.yaml says what each argument is (``sample``: :func:`alexnet_lab.data.generated.write_sample`).
    """

    @checked
    def __init__(
        self,
        root: str | None,
        layout: Literal["auto", Layout, "prepared"] = "auto",
        num_classes: PositiveInt = 1000,
        batch_size: PositiveInt = 128,
        num_workers: Annotated[int, Ge(0)] = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        mean: Literal["image", "channel"] = "image",
        lighting_std: Annotated[float, Ge(0)] = LIGHTING_STD,
        pca_lighting: PcaLighting = "eigenvalues",
        crop_size: InputSize | None = PAPER_INPUT_SIZE,  # None in eval until the checkpoint's net says
        test_crops: TestCrops = 1,
        stats_file: str | None = None,
        stats_max_images: PositiveInt | None = None,
        skip_bad_images: bool = False,
        fast_dct: bool = True,
        sample: Callable[[Path], Any] | None = None,
        seed: Seed = 0,
    ) -> None:
        super().__init__(num_classes, batch_size, num_workers, seed, pin_memory, persistent_workers)
        if not root:
            raise UserError("no data root: set data.root=DIR or the IMAGENET_ROOT environment variable")
        self.root = Path(root).expanduser()
        self.sample = sample
        self.prepared = layout == "prepared" or (sample is None and is_prepared(self.root))
        if self.prepared:
            read_meta(self.root)  # a wrong root fails here, before any process is started
        elif sample is None:
            detect_layout(self.root)
        self.layout, self.mean, self.lighting_std, self.pca_lighting = layout, mean, lighting_std, pca_lighting
        self.crop_size, self.test_crops = crop_size or PAPER_INPUT_SIZE, test_crops
        self.image_shape = (3, self.crop_size)
        default_stats = self.root / STATS_FILE if self.prepared else self.root.parent / f"{self.root.name}-stats.pt"
        self.stats_file = Path(stats_file) if stats_file else default_stats
        self.stats_max_images, self.skip_bad_images = stats_max_images, skip_bad_images
        self.fast_dct = fast_dct
        self.skipped_count = 0  # unreadable files skipped (data.skip_bad_images), each named as it comes
        self.normalizer: DeviceNormalizer | None = None

    collate = staticmethod(collate)

    # -- data on disk ------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.prepared:
            return  # src/prepare.py wrote the shards and their statistics
        super().prepare_data()
        if self.needs_stats:  # jobs that start together on a fresh cache: one writes, the others wait for it
            create_once(self.stats_file, self._write_stats)

    @property
    def needs_stats(self) -> bool:
        """The training set's mean image (section 2) and PCA (section 4.1), unless the net normalises its images
        its own way (fit_to) and there is no lighting to add: in validation, or with lighting_std=0."""
        fitting = self.trainer is not None and self.trainer.state.fn == "fit"
        return self.net_normalization is None or (fitting and self.lighting_std > 0)

    def _write_stats(self, path: Path) -> None:
        paths = subset([p for p, _ in read_split(self.root, "train", self.layout).samples], self.stats_max_images)
        log.info("computing the training-set mean and RGB covariance from %d images", len(paths))
        save_stats(compute_stats(paths, num_workers=self.num_workers, skip_bad=self.skip_bad_images), path)

    def read_split(self, name: str) -> SplitIndex | ShardReader:
        return ShardReader(self.root, name) if self.prepared else read_split(self.root, name, self.layout)

    def setup(self, stage: str | None = None) -> None:
        if self.normalizer is not None:
            return
        assert self.device_batch  # the batch divides over the processes
        if stage in (None, "fit"):
            self.check_classes(len(self.split("train").wnids), self.root)
        stats = (
            load_stats(self.stats_file) if self.needs_stats else {"eigvals": torch.zeros(3), "eigvecs": torch.eye(3)}
        )
        divisor = None
        if self.net_normalization is not None:  # its weights' per-channel mean and std on [0, 1] pixels
            mean, std = (torch.tensor(values) for values in self.net_normalization)
            mean_image, divisor = (255 * mean)[:, None, None].expand(3, IMAGE_SIZE, IMAGE_SIZE), 255 * std
        elif self.mean == "channel":
            mean_image = stats["mean_image"].mean(dim=(1, 2), keepdim=True).expand(3, IMAGE_SIZE, IMAGE_SIZE)
        else:
            mean_image = stats["mean_image"]
        self.normalizer = DeviceNormalizer(  # (without statistics there is no lighting: not in a fit, or std 0)
            mean_image, stats["eigvals"], stats["eigvecs"], self.lighting_std, self.pca_lighting, divisor
        )

    # -- the contract (alexnet_lab.data.base) -------------------------------------------------------------------
    def dataset(self, split: Literal["train", "val"], use: Use) -> Dataset:
        mode: CropMode = "train" if use == "train" else "ten" if use == "val" and self.test_crops == 10 else "centre"
        crops, index = Crops(mode, self.crop_size), self.split(split)
        if isinstance(index, ShardReader):
            return PreparedDataset(index, crops, self.fast_dct)
        return ImageDataset(index.samples, crops, self.skip_bad_images)

    def net_input(self, batch: dict[str, Any], training: bool) -> torch.Tensor:
        assert self.normalizer is not None, "setup() first"
        images = batch["image"]
        if self.normalizer.mean_image.device != images.device:
            self.normalizer.to(images.device)
        return self.normalizer(images, batch["geometry"], lighting=training)

    def skipped(self, paths: list[str]) -> None:
        for path in paths:
            self.skipped_count += 1
            log.warning("skipped unreadable image %s (%d so far)", path, self.skipped_count)

    def teardown(self, stage: str) -> None:
        if self.skipped_count:
            log.warning("data: skipped %d unreadable files, each named above", self.skipped_count)
