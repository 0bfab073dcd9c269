"""The LightningDataModule: ImageNet as the paper used it, in any on-disk layout, or the generated sample."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torch.utils.data.dataloader import default_collate

from alexnet_lab.data import sample as sample_data
from alexnet_lab.data.layouts import (
    BadImageError,
    DataRootError,
    SplitIndex,
    detect_layout,
    load_rgb,
    read_split,
)
from alexnet_lab.data.prepared import (
    DECODERS,
    STATS_FILE,
    PreparedDataset,
    ShardReader,
    decode_on_device,
    is_prepared,
    read_meta,
)
from alexnet_lab.data.sampling import ResumableLoader, ResumableSampler, seed_step
from alexnet_lab.data.stats import compute_stats, load_stats, save_stats, subset
from alexnet_lab.data.transforms import IMAGE_SIZE, LIGHTING_STD, Crops, DeviceNormalizer
from alexnet_lab.errors import UserError
from alexnet_lab.files import create_once
from alexnet_lab.models.alexnet import PAPER_INPUT_SIZE

log = logging.getLogger(__name__)

MEAN_MODES = ("image", "channel")


class ImageDataset(Dataset):
    """(path, label) pairs -> {"image": uint8 crop(s), "geometry", "label"}; a bad file raises with its path,
    or, with ``skip_bad``, comes back as {"skipped": path} for the collate function to count."""

    def __init__(self, samples: list[tuple[str, int]], transform: Crops, skip_bad: bool = False) -> None:
        self.samples, self.transform, self.skip_bad = samples, transform, skip_bad

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        """``item``: an index, or (index, augmentation seed) from :class:`ResumableSampler`."""
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


class ShardSampler(Sampler[int]):
    """Rank r of w gets indices r, r + w, r + 2w, ...: every index exactly once over all ranks, with no
    padding (DistributedSampler repeats images so that ranks get equal shares, which would count them twice)."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0) -> None:
        self.size, self.num_replicas, self.rank = size, num_replicas, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))


def per_device_batch(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise UserError(
            f"data.batch_size={global_batch} (the global batch) does not divide over {world_size} processes: "
            f"choose a multiple of {world_size}"
        )
    return global_batch // world_size


class ImageNetDataModule(L.LightningDataModule):
    """Args:
    root: the dataset folder, in any of the layouts of :mod:`alexnet_lab.data.layouts`.
    layout: ``auto`` (detect), ``folders``, ``archives``, ``kaggle``, or ``prepared`` (shards written by
        src/prepare.py; detected too).
    num_classes: must match the classes found under ``root``.
    batch_size: the global batch (section 5: 128), split evenly over the processes.
    mean: ``image`` (the paper's mean image) or ``channel`` (one mean per RGB channel).
    lighting_std: std of the PCA lighting coefficients (section 4.1: 0.1); 0 turns it off.
    pca_lighting: ``eigenvalues`` (section 4.1: alpha_i * lambda_i) or ``stdevs`` (alpha_i * sqrt(lambda_i)).
    crop_size: the patches cut for the net: 224 (section 4.1) or 227.
    test_crops: 1 = centre crop, 10 = the paper's ten crops with the softmax averaged (section 4.1).
    stats_file: where the training-set statistics are cached (default: beside the data).
    stats_max_images: compute the statistics from at most this many training images (default: all).
    skip_bad_images: skip unreadable files, counting and naming each, instead of stopping.
    fast_dct: decode prepared shards with the fast integer IDCT (faster; pixels within a level or two).
    decode: ``cpu`` (workers decode and crop) or ``gpu`` (prepared shards only: workers read the JPEG bytes,
        which are decoded in batches and cropped on the model's device, with nvJPEG on a GPU).
    sample: arguments of :func:`alexnet_lab.data.sample.write_layout`; when given, ``root`` is generated on
        first use.
    """

    def __init__(
        self,
        root: str | None,
        layout: str = "auto",
        num_classes: int = 1000,
        batch_size: int = 128,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        mean: str = "image",
        lighting_std: float = LIGHTING_STD,
        pca_lighting: str = "eigenvalues",
        crop_size: int = PAPER_INPUT_SIZE,
        test_crops: int = 1,
        stats_file: str | None = None,
        stats_max_images: int | None = None,
        skip_bad_images: bool = False,
        fast_dct: bool = True,
        decode: str = "cpu",
        sample: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not root:
            raise DataRootError("no data root: set data.root=DIR or the IMAGENET_ROOT environment variable")
        if mean not in MEAN_MODES:
            raise UserError(f"unknown data.mean={mean!r}: use image or channel")
        if test_crops not in (1, 10):
            raise UserError(f"data.test_crops={test_crops!r}: use 1 (centre crop) or 10 (the paper's ten crops)")
        self.root = Path(root).expanduser()
        self.sample = dict(sample) if sample else None
        self.prepared = layout == "prepared" or (self.sample is None and is_prepared(self.root))
        if self.prepared:
            read_meta(self.root)  # a wrong root fails here, before any process is started
        elif self.sample is None:
            detect_layout(self.root)
        self.layout, self.num_classes, self.batch_size = layout, num_classes, batch_size
        self.num_workers, self.pin_memory, self.persistent_workers = (
            num_workers,
            pin_memory,
            persistent_workers,
        )
        self.mean, self.lighting_std, self.test_crops, self.crop_size = mean, lighting_std, test_crops, crop_size
        self.pca_lighting = pca_lighting
        default_stats = self.root / STATS_FILE if self.prepared else self.root.parent / f"{self.root.name}-stats.pt"
        self.stats_file = Path(stats_file) if stats_file else default_stats
        self.stats_max_images, self.skip_bad_images, self.seed = stats_max_images, skip_bad_images, seed
        self.fast_dct = fast_dct
        if decode not in DECODERS:
            raise UserError(f"unknown data.decode={decode!r}: use {' or '.join(DECODERS)}")
        if decode == "gpu" and not self.prepared:
            raise UserError(f"data.decode=gpu reads prepared shards, and {self.root} is not: run src/prepare.py "
                            "and use data=imagenet_prepared, or set data.decode=cpu")  # fmt: skip
        self.decode = decode
        self.skipped: list[str] = []
        self.normalizer: DeviceNormalizer | None = None
        self.train_index: SplitIndex | ShardReader | None = None
        self.val_index: SplitIndex | ShardReader | None = None

    # -- data on disk ------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.prepared:
            return  # src/prepare.py wrote the shards and their statistics
        # jobs that start together on a fresh cache or data root: one writes, the others wait for it
        if self.sample is not None:
            create_once(self.root, self._write_sample)
        create_once(self.stats_file, self._write_stats)

    def _write_sample(self, root: Path) -> None:
        assert self.sample is not None
        log.info("writing the generated sample dataset to %s", root)
        sample_data.write_layout(root, **self.sample)

    def _write_stats(self, path: Path) -> None:
        paths = subset([p for p, _ in read_split(self.root, "train", self.layout).samples], self.stats_max_images)
        log.info("computing the training-set mean and RGB covariance from %d images", len(paths))
        save_stats(compute_stats(paths, num_workers=self.num_workers), path)

    @property
    def world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    @property
    def class_names(self) -> list[str]:
        return (self.train_index or self._split("train")).class_names

    def _split(self, split: str) -> SplitIndex | ShardReader:
        return ShardReader(self.root, split) if self.prepared else read_split(self.root, split, self.layout)

    def _dataset(self, split: str, crops: Crops, decode: str | None = None) -> ImageDataset | PreparedDataset:
        index = self.train_index if split == "train" else self.val_index
        assert index is not None, "setup() first"
        if isinstance(index, ShardReader):
            return PreparedDataset(index, crops, self.fast_dct, decode or self.decode)
        return ImageDataset(index.samples, crops, self.skip_bad_images)

    def setup(self, stage: str | None = None) -> None:
        if self.normalizer is not None:
            return
        world_size, _ = self.world
        self.device_batch = per_device_batch(self.batch_size, world_size)
        if stage in (None, "fit"):
            self.train_index = self._split("train")
            found = len(self.train_index.wnids)
            if found != self.num_classes:
                raise UserError(f"data.num_classes={self.num_classes} but {self.root} has {found} classes: "
                                f"set data.num_classes={found}")  # fmt: skip
        self.val_index = self._split("val")
        stats = load_stats(self.stats_file)
        mean_image = stats["mean_image"]
        if self.mean == "channel":
            mean_image = mean_image.mean(dim=(1, 2), keepdim=True).expand(3, IMAGE_SIZE, IMAGE_SIZE)
        self.normalizer = DeviceNormalizer(mean_image, stats["eigvals"], stats["eigvecs"], self.lighting_std,
                                           self.pca_lighting)  # fmt: skip

    # -- loaders -----------------------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, sampler: Sampler, drop_last: bool, loader: type = DataLoader,
                **kwargs: Any) -> DataLoader:  # fmt: skip
        workers = self.num_workers
        return loader(
            dataset,
            batch_size=self.device_batch,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
            collate_fn=collate,
            drop_last=drop_last,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train", Crops("train", self.crop_size))
        world_size, rank = self.world
        sampler = ResumableSampler(len(dataset), num_replicas=world_size, rank=rank, seed=self.seed)
        return self._loader(dataset, sampler, drop_last=True, loader=ResumableLoader, position=self._position)

    def _position(self) -> tuple[int, int]:
        """(epoch, batches of it trained on) at the moment a checkpoint is written."""
        trainer = self.trainer
        assert trainer is not None
        progress: Any = trainer.fit_loop.epoch_loop.batch_progress.current  # a _ProcessedTracker
        return trainer.current_epoch, progress.processed

    def val_dataloader(self) -> DataLoader:
        dataset = self._dataset("val", Crops("ten" if self.test_crops == 10 else "centre", self.crop_size))
        world_size, rank = self.world
        return self._loader(dataset, ShardSampler(len(dataset), world_size, rank), drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    # -- on the device -----------------------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and "jpeg" in batch:  # data.decode=gpu
            device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
            return decode_on_device(batch, self.crop_size, device)
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, dict):
            return batch  # not one of our batches (e.g. the model summary's example input)
        assert self.normalizer is not None, "setup() first"
        for path in batch.pop("skipped", []):
            self.skipped.append(path)
            log.warning("skipped unreadable image %s (%d so far)", path, len(self.skipped))
        if "image" not in batch:
            return {"image": torch.empty(0, 3, 0, 0), "label": torch.empty(0, dtype=torch.long)}
        images = batch["image"]
        if self.normalizer.mean_image.device != images.device:
            self.normalizer.to(images.device)
        trainer = self.trainer
        training = trainer is not None and trainer.training
        if training:
            assert trainer is not None
            seed_step(self.seed, trainer.global_step, trainer.global_rank)  # lighting and dropout of this step
        image = self.normalizer(images, batch["geometry"], lighting=training)
        return {"image": image, "label": batch["label"]}

    # -- for the figures (alexnet_lab.figures) ------------------------------------------------------------------
    def _centre_dataset(self, split: str) -> ImageDataset | PreparedDataset:
        return self._dataset(split, Crops("centre", self.crop_size), decode="cpu")

    def _normalize(self, batch: dict[str, Any]) -> torch.Tensor:
        assert self.normalizer is not None, "setup() first"
        return self.normalizer(batch["image"], batch["geometry"])

    def split_size(self, split: str) -> int:
        return len(self._centre_dataset(split))

    def figure_images(self, split: str, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(uint8 centre crops to show, the net's inputs, labels) of these images of ``split``."""
        batch = collate([self._centre_dataset(split)[i] for i in indices])
        return batch["image"], self._normalize(batch), torch.as_tensor(batch["label"])

    def figure_batches(self, split: str, count: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The centre crops of the first ``count`` images of ``split`` as (net inputs, indices), in batches."""
        dataset = self._centre_dataset(split)
        indices = list(range(min(count, len(dataset))))
        loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch_size,
                            num_workers=self.num_workers, collate_fn=collate)  # fmt: skip
        start = 0
        for batch in loader:
            size = len(batch["label"])
            yield self._normalize(batch), torch.arange(start, start + size)
            start += size

    def teardown(self, stage: str) -> None:
        if self.skipped:
            log.warning("data: skipped %d unreadable files, each named above", len(self.skipped))
