"""The backbones (the paper's AlexNet, Figure 1's CifarNet, LeNet-5, and torchvision's AlexNet as a reference), each a
config choice of the same LightningModule: conf/model/<name>.yaml names the class in ``net._target_`` with its
arguments. A new one is a ``torch.nn.Module`` that meets :class:`Backbone`, and its config (docs/extending.md)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from alexnet_lab.models.alexnet import AlexNet
from alexnet_lab.models.cifar_net import CifarNet
from alexnet_lab.models.lenet import LeNet5


@runtime_checkable
class Backbone(Protocol):
    """What the LightningModule, the checks and the figures ask of a backbone. Optional: ``input_normalization``
    (per-channel mean and std on [0, 1] pixels, which its weights expect, instead of the training set's mean
    image), ``named_weights()`` (weights it knows by name, for ``model.weights``) and ``published_errors`` (what
    those weights are published to reach, which src/eval.py compares with)."""

    in_channels: int  # it takes images of in_channels x input_size x input_size
    input_size: int
    columns: int  # Figure 3 draws the first convolution's kernels in this many blocks (the paper's GPUs)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The logits."""
        ...

    def hidden(self, images: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations, whose Euclidean distances Figure 4 ranks."""
        ...


__all__ = ["AlexNet", "Backbone", "CifarNet", "LeNet5"]
