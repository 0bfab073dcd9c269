"""The backbones, each a config choice of the same LightningModule (``model.net.arch``):

- ``alexnet``: the paper's net (section 3), :mod:`alexnet_lab.models.alexnet`;
- ``cifar_net``: Figure 1's four-layer CIFAR-10 net, :mod:`alexnet_lab.models.cifar_net`;
- ``lenet5``: LeNet-5 on MNIST, :mod:`alexnet_lab.models.lenet`.

Each has ``in_channels``, ``input_size``, ``columns``, ``first_conv`` (the kernels Figure 3 draws) and
``hidden(images)`` (the last hidden layer, whose Euclidean distances Figure 4 ranks).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from alexnet_lab.models.alexnet import AlexNet
from alexnet_lab.models.cifar_net import CifarNet
from alexnet_lab.models.lenet import LeNet5

BACKBONES: dict[str, type[nn.Module]] = {"alexnet": AlexNet, "cifar_net": CifarNet, "lenet5": LeNet5}


def build_net(arch: str = "alexnet", **kwargs: Any) -> Any:
    """The backbone ``arch`` (typed Any: each has the attributes of the module doc, not nn.Module's)."""
    if arch not in BACKBONES:
        raise ValueError(f"unknown arch {arch!r}: choose one of {', '.join(BACKBONES)}")
    return BACKBONES[arch](**kwargs)


__all__ = ["BACKBONES", "AlexNet", "CifarNet", "LeNet5", "build_net"]
