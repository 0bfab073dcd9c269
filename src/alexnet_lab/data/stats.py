"""Training-set statistics, computed once and cached beside the data: the mean image (section 2) and the
eigen-decomposition of the RGB covariance for the PCA lighting (section 4.1)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from alexnet_lab.data.layouts import load_rgb
from alexnet_lab.data.transforms import IMAGE_SIZE, preprocess


class _Preprocessed(Dataset):
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return preprocess(load_rgb(self.paths[i]))


def compute_stats(paths: list[str], num_workers: int = 0, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Mean 256x256 image (0..255) and the 3x3 covariance of RGB pixel values (scaled to [0, 1])."""
    image_sum = torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float64)
    pixel_sum = torch.zeros(3, dtype=torch.float64)
    outer_sum = torch.zeros(3, 3, dtype=torch.float64)
    loader = DataLoader(_Preprocessed(paths), batch_size=batch_size, num_workers=num_workers)
    for batch in loader:
        images = batch.double()
        image_sum += images.sum(0)
        pixels = (images / 255.0).permute(1, 0, 2, 3).reshape(3, -1)
        pixel_sum += pixels.sum(1)
        outer_sum += pixels @ pixels.T
    images_seen = len(paths)
    pixels_seen = images_seen * IMAGE_SIZE * IMAGE_SIZE
    mean_rgb = pixel_sum / pixels_seen
    covariance = outer_sum / pixels_seen - torch.outer(mean_rgb, mean_rgb)
    eigvals, eigvecs = torch.linalg.eigh(covariance)
    order = eigvals.argsort(descending=True)
    return {
        "mean_image": (image_sum / images_seen).float(),
        "rgb_covariance": covariance.float(),
        "eigvals": eigvals[order].float(),
        "eigvecs": eigvecs[:, order].float(),  # columns are the eigenvectors p_i
        "images": torch.tensor(images_seen),
    }


def subset(paths: list[str], max_images: int | None) -> list[str]:
    """Every k-th path, so a capped computation still spans all classes."""
    if not max_images or max_images >= len(paths):
        return paths
    step = len(paths) / max_images
    return [paths[int(i * step)] for i in range(max_images)]


def save_stats(stats: dict[str, torch.Tensor], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(stats, tmp)
    os.replace(tmp, path)


def load_stats(path: str | Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)
