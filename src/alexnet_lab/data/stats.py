"""Training-set statistics, computed once and cached beside the data: the mean image (section 2) and the
eigen-decomposition of the RGB covariance for the PCA lighting (section 4.1)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from alexnet_lab.data.layouts import BadImageError, load_rgb
from alexnet_lab.data.transforms import IMAGE_SIZE, preprocess
from alexnet_lab.files import atomic_write

log = logging.getLogger(__name__)


def _load(paths: list[str], skip_bad: bool) -> torch.Tensor:
    """A batch of paths as their 256x256 images (in a loader's worker); with ``skip_bad``, without those that cannot be
    read, else the first of them raises."""
    images = []
    for path in paths:
        try:
            images.append(preprocess(load_rgb(path)))
        except BadImageError:
            if not skip_bad:
                raise
    return torch.stack(images) if images else torch.empty(0, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)


class StatsSums:
    """Running sums for the mean 256x256 image (0..255) and the 3x3 covariance of RGB pixels scaled to [0, 1];
    sums of parts merge, so shards can be summed apart and combined."""

    SUMS = ("image_sum", "pixel_sum", "outer_sum")  # the tensors; ``images`` counts

    def __init__(self) -> None:
        self.image_sum = torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float64)
        self.pixel_sum = torch.zeros(3, dtype=torch.float64)
        self.outer_sum = torch.zeros(3, 3, dtype=torch.float64)
        self.images = 0

    def add(self, batch: torch.Tensor) -> None:
        """``batch``: uint8 (N, 3, 256, 256)."""
        images = batch.double()
        self.image_sum += images.sum(0)
        pixels = (images / 255.0).permute(1, 0, 2, 3).reshape(3, -1)
        self.pixel_sum += pixels.sum(1)
        self.outer_sum += pixels @ pixels.T
        self.images += images.shape[0]

    def state(self) -> dict[str, torch.Tensor]:
        return {**{name: getattr(self, name) for name in self.SUMS}, "images": torch.tensor(self.images)}

    def merge(self, state: dict[str, torch.Tensor]) -> None:
        for name in self.SUMS:
            getattr(self, name).add_(state[name])
        self.images += int(state["images"])

    def finish(self) -> dict[str, torch.Tensor]:
        if not self.images:
            raise ValueError("no training images to compute the statistics from")
        pixels_seen = self.images * IMAGE_SIZE * IMAGE_SIZE
        mean_rgb = self.pixel_sum / pixels_seen
        covariance = self.outer_sum / pixels_seen - torch.outer(mean_rgb, mean_rgb)
        eigvals, eigvecs = torch.linalg.eigh(covariance)
        order = eigvals.argsort(descending=True)
        return {
            "mean_image": (self.image_sum / self.images).float(),
            "rgb_covariance": covariance.float(),
            "eigvals": eigvals[order].float(),
            "eigvecs": eigvecs[:, order].float(),  # columns are the eigenvectors p_i
            "images": torch.tensor(self.images),
        }


def compute_stats(
    paths: list[str], num_workers: int = 0, batch_size: int = 64, skip_bad: bool = False
) -> dict[str, torch.Tensor]:
    """Mean 256x256 image (0..255) and the 3x3 covariance of RGB pixel values (scaled to [0, 1]), over the
    images that can be read with ``skip_bad`` (data.skip_bad_images), else a file that cannot be read raises."""
    sums = StatsSums()
    load = functools.partial(_load, skip_bad=skip_bad)
    for batch in DataLoader(paths, batch_size=batch_size, num_workers=num_workers, collate_fn=load):  # type: ignore[arg-type]
        sums.add(batch)
    if sums.images < len(paths):
        log.warning("statistics: %d unreadable files skipped (data.skip_bad_images)", len(paths) - sums.images)
    return sums.finish()


def subset(paths: list[str], max_images: int | None) -> list[str]:
    """Every k-th path, so a capped computation still spans all classes."""
    if not max_images or max_images >= len(paths):
        return paths
    step = len(paths) / max_images
    return [paths[int(i * step)] for i in range(max_images)]


def save_stats(stats: dict[str, torch.Tensor], path: str | Path) -> None:
    atomic_write(path, lambda tmp: torch.save(stats, tmp))


def load_stats(path: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)
