"""Sampling that makes a run reproducible step by step, so that a resumed run continues bit for bit (README,
"Checkpoints, preemption and exact resume"): the training order and each image's crop and flip are functions of
(seed, epoch, position), whichever worker loads it; each step reseeds the global RNGs from (seed, step, rank)
(:func:`seed_step`) for the lighting and dropout; the loader's state (epoch, batches done) is in every checkpoint.

A loader with workers draws ``prefetch_factor * num_workers`` indices as soon as its iterator exists. But Lightning
creates a resumed run's first iterator before it calls ``set_epoch``, and before it decides which epoch the run
continues in; it does not create it again. So :class:`ResumableLoader` creates the real iterator at the first
batch asked for, when the epoch is known; otherwise a run resumed in a later epoch trained on epoch 0's order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

_MASK = (1 << 63) - 1


def mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): neighbouring inputs give unrelated seeds."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & _MASK


def seed_step(seed: int, step: int, rank: int) -> None:
    """Reseed python, numpy and torch (CPU, and this rank's CUDA device) for training step ``step`` of rank
    ``rank``. torch.manual_seed would seed every device too, several times slower (docs/benchmarks.md)."""
    s = mix(seed, step, rank)
    random.seed(s)
    np.random.seed(s & 0xFFFFFFFF)
    torch.default_generator.manual_seed(s)
    if torch.cuda.is_initialized():
        torch.cuda.default_generators[torch.cuda.current_device()].manual_seed(s)


class ResumableSampler(Sampler[tuple[int, int]]):
    """The training order of one rank: yields (index, augmentation seed).

    Each epoch is a permutation of the dataset drawn from (seed, epoch), cut to a multiple of the world size;
    rank r of w takes positions r, r + w, ... . :meth:`resume` skips the first samples of one epoch.
    """

    def __init__(self, size: int, num_replicas: int, rank: int, seed: int) -> None:
        self.size, self.num_replicas, self.rank, self.seed = size, num_replicas, rank, seed
        self.epoch = 0
        self._skip: tuple[int, int] | None = None  # (epoch, samples of this rank to skip)

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before each epoch
        self.epoch = epoch

    def resume(self, epoch: int, samples: int) -> None:
        self._skip = (epoch, samples)

    def __len__(self) -> int:
        return self.size // self.num_replicas

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(mix(self.seed, self.epoch)))
        w = self.num_replicas
        start = 0
        if self._skip is not None and self._skip[0] == self.epoch:
            start = self._skip[1]
            self._skip = None
        for pos in range(self.rank + start * w, len(self) * w, w):
            yield int(order[pos]), mix(self.seed, self.epoch, pos)


class ResumableLoader(DataLoader):
    """A DataLoader that Lightning saves and restores (it has ``state_dict``/``load_state_dict``).

    ``position`` tells, when a checkpoint is written, the epoch and how many of its batches are trained on. (With
    another sampler, which Lightning puts in for ``overfit_batches``, it is a plain DataLoader that cannot resume.)
    """

    def __init__(self, *args: Any, position: Callable[[], tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.position = position

    def __iter__(self) -> Any:  # DataLoader promises a _BaseDataLoaderIter; Lightning needs an iterator only
        """An iterator that starts the loader's own (and so draws the first indices) at the first ``next``: a
        generator runs nothing before it (see the module doc)."""
        yield from super().__iter__()

    def state_dict(self) -> dict[str, int]:
        epoch, batches = self.position()
        return {"epoch": epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        assert isinstance(self.sampler, ResumableSampler) and self.batch_size is not None
        self.sampler.resume(state["epoch"], state["batches"] * self.batch_size)
