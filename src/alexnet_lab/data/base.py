"""The contract every dataset of this framework meets, written once in :class:`ClassificationData`.

- Exact resume: the training order and each image's augmentation are functions of (seed, epoch, position)
  (:class:`ResumableSampler`), the loader's position goes into every checkpoint (:class:`ResumableLoader`),
  and each step reseeds the lighting and dropout from (seed, step, rank) (:func:`seed_step`).
- Validation under DDP counts each image once: rank r of w takes r, r + w, ... (:meth:`val_dataloader`),
  where ``DistributedSampler`` would pad with repeats.
- The global batch (section 5's 128) is split evenly over the processes.
- A batch that lost every image (unreadable files, skipped) is an empty batch the module passes over (under
  DDP, its rank adds zero gradients to the step: ``alexnet_lab.module.zero_loss``).

A dataset subclasses it and gives :meth:`dataset` (items taken by ``(index, augmentation seed)``) and
:meth:`net_input` (on the device: the float tensor the net takes); docs/extending.md has the recipe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler, Subset
from torch.utils.data.dataloader import default_collate

from alexnet_lab import compat
from alexnet_lab.data.sampling import ResumableLoader, ResumableSampler, seed_step
from alexnet_lab.errors import UserError
from alexnet_lab.files import atomic_dir, create_once

log = logging.getLogger(__name__)

Use = Literal["train", "val", "figure"]  # what a dataset is asked for: augmented training items, val, or figures


class Split(Dataset):
    """A split held in memory: uint8 images (N, C, H, W) and int64 labels, with the dataset's class names; an
    item, taken by index or by (index, augmentation seed) (no augmentation here), is {"image", "label"}."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> None:
        self.images, self.labels, self.class_names = images, labels, class_names

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        i = item[0] if isinstance(item, tuple) else item
        return {"image": self.images[i], "label": self.labels[i]}


def per_device_batch(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise UserError(
            f"data.batch_size={global_batch} (the global batch) does not divide over {world_size} processes: "
            f"choose a multiple of {world_size}"
        )
    return global_batch // world_size


class ClassificationData(L.LightningDataModule):
    """Args:
    num_classes: must match the classes found in the data.
    batch_size: the global batch, split evenly over the processes.
    num_workers, pin_memory, persistent_workers: the loaders'.
    seed: of the training order, the augmentations and the step seeds.
    """

    image_shape: tuple[int, int]  # (channels, size) of the images the net is given
    root: Path  # where a dataset read from files finds them
    sample: Callable[[Path], Any] | None = None  # writes a generated copy of the dataset into a folder: root

    def __init__(
        self,
        num_classes: int,
        batch_size: int,
        num_workers: int,
        seed: int,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes, self.batch_size, self.num_workers, self.seed = num_classes, batch_size, num_workers, seed
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.splits: dict[str, Any] = {}

    @property
    def class_names(self) -> list[str]:
        """The classes' names in label order (Figure 4's captions): the training split's."""
        return self.split("train").class_names

    def split(self, name: str) -> Any:
        """:meth:`read_split`, once per split."""
        if name not in self.splits:
            self.splits[name] = self.read_split(name)
        return self.splits[name]

    def prepare_data(self) -> None:
        """With ``sample``: ``root`` is generated on first use, whole or not at all; jobs that start together on a
        fresh root: one writes it, the others wait for it."""
        if self.sample is not None:
            create_once(self.root, self._write_sample)

    def _write_sample(self, root: Path) -> None:
        log.info("writing the generated sample dataset to %s", root)
        atomic_dir(root, self.sample)  # type: ignore[arg-type]

    def read_split(self, name: str) -> Any:
        """What a dataset that reads its splits keeps of one (its files and labels, or its images)."""
        raise NotImplementedError

    # -- what a dataset gives ----------------------------------------------------------------------------------
    def dataset(self, split: Literal["train", "val"], use: Use) -> Dataset:
        """The split's items, each taken by index or by (index, augmentation seed) for training: a dict with
        "image" and "label" (and what :meth:`net_input` needs)."""
        raise NotImplementedError

    def net_input(self, batch: dict[str, Any], training: bool) -> torch.Tensor:
        """The net's float input from a batch on the device (``training``: with the training augmentations)."""
        raise NotImplementedError

    collate = staticmethod(default_collate)

    def fit_to(self, net: Any, classes: int | None = None) -> None:
        """Before the data are read: the net takes the images this dataset gives (as many channels, of its size)
        and tells apart as many ``classes`` as it has, or more; a net that declares the normalisation its weights
        expect (``input_normalization``: per-channel mean and std on [0, 1] pixels) is given its images so (a
        dataset that has no such mode ignores it)."""
        if classes is not None and self.num_classes > classes:
            raise UserError(f"data.num_classes={self.num_classes} but the net tells {classes} classes apart: give it "
                            f"data of its classes (data.num_classes={classes})")  # fmt: skip
        channels, size = self.image_shape
        if (int(net.in_channels), int(net.input_size)) != (channels, size):
            takes, gives = f"{net.in_channels}x{net.input_size}x{net.input_size}", f"{channels}x{size}x{size}"
            raise UserError(
                f"the net ({type(net).__name__}) takes {takes} images and the data give {gives}: choose a dataset "
                "of its images (LeNet-5: data=mnist or mnist_sample; Figure 1's net: data=cifar10 or cifar10_sample), "
                "or its preset (experiment=lenet5, experiment=fig1)"
            )
        self.net_normalization = getattr(net, "input_normalization", None)

    net_normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def check_classes(self, found: int, where: Any) -> None:
        if found != self.num_classes:
            raise UserError(
                f"data.num_classes={self.num_classes} but {where} has {found} classes: set data.num_classes={found}"
            )

    # -- the contract ----------------------------------------------------------------------------------------------
    @property
    def world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    @property
    def device_batch(self) -> int:
        return per_device_batch(self.batch_size, self.world[0])

    def _loader(self, dataset: Dataset, sampler: Iterable[Any], loader: type = DataLoader, **kwargs: Any) -> DataLoader:
        return loader(
            dataset,
            batch_size=self.device_batch,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            collate_fn=self.collate,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train", "train")
        overfit: float = getattr(self.trainer, "overfit_batches", 0)  # the Trainer sets it in its __init__
        if overfit:
            # Lightning's overfit_batches takes the first batches in order, each of one class where the dataset is
            # sorted by class (ImageNet's, the samples): the same batches every epoch, drawn across the classes
            order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(self.seed))  # type: ignore[arg-type]
            dataset = Subset(dataset, order.tolist())
            return self._loader(dataset, SequentialSampler(dataset), drop_last=True)
        world_size, rank = self.world
        sampler = ResumableSampler(len(dataset), num_replicas=world_size, rank=rank, seed=self.seed)  # type: ignore[arg-type]
        return self._loader(dataset, sampler, loader=ResumableLoader, drop_last=True, position=self._position)

    def _position(self) -> tuple[int, int]:
        """(epoch, batches of it trained on) at the moment a checkpoint is written."""
        assert self.trainer is not None
        return self.trainer.current_epoch, compat.batches_done(self.trainer)

    def val_dataloader(self) -> DataLoader:
        """Rank r of w takes images r, r + w, r + 2w, ...: each image once over the ranks, with no padding
        (``DistributedSampler`` repeats images so that the ranks get equal shares, which would count them twice)."""
        dataset, (world_size, rank) = self.dataset("val", "val"), self.world
        return self._loader(dataset, range(rank, len(dataset), world_size))  # type: ignore[arg-type]

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not isinstance(batch, dict):
            return batch  # not one of our batches (e.g. the model summary's example input)
        self.skipped(batch.pop("skipped", []))
        if "image" not in batch:  # every image of the batch was skipped
            return {"image": torch.empty(0, self.image_shape[0], 0, 0), "label": torch.empty(0, dtype=torch.long)}
        trainer = self.trainer
        training = trainer is not None and trainer.training
        if training:
            assert trainer is not None
            seed_step(self.seed, trainer.global_step, trainer.global_rank)  # lighting and dropout of this step
        return {"image": self.net_input(batch, training), "label": batch["label"]}

    def skipped(self, paths: list[str]) -> None:
        """Images of the batch that could not be read (a dataset that skips them says so here)."""
