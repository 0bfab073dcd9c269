"""ImageNet as the paper used it: on-disk layouts, preprocessing, augmentations, and a generated sample."""

from alexnet_lab.data.datamodule import ImageNetDataModule, ShardSampler, per_device_batch
from alexnet_lab.data.layouts import BadImageError, DataRootError, detect_layout, load_rgb, read_split

__all__ = [
    "BadImageError",
    "DataRootError",
    "ImageNetDataModule",
    "ShardSampler",
    "detect_layout",
    "load_rgb",
    "per_device_batch",
    "read_split",
]
