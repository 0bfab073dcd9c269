"""torchvision's AlexNet (the later "one weird trick" variant, not the paper's net) with its published weights: a
known-good reference for a user's ImageNet copy before a long run (README, "Check your ImageNet first")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torchvision.models import AlexNet_Weights

from alexnet_lab.declare import PositiveInt, checked

REFERENCE = AlexNet_Weights.IMAGENET1K_V1  # the weights whose published accuracy eval.py compares with


class TorchvisionAlexNet(torchvision.models.AlexNet):
    """torchvision.models.AlexNet (its state dicts load as they are) meeting alexnet_lab.models.Backbone."""

    in_channels, input_size, columns = 3, 224, 1
    # the per-channel mean and std on [0, 1] pixels that its weights expect, instead of the mean image
    input_normalization = (tuple(REFERENCE.transforms().mean), tuple(REFERENCE.transforms().std))
    # torchvision's published centre-crop errors of REFERENCE on ILSVRC-2012 val, from its weights' meta
    published_errors = {
        f"top{k}_err": round(1 - REFERENCE.meta["_metrics"]["ImageNet-1K"][f"acc@{k}"] / 100, 6) for k in (1, 5)
    }

    @checked
    def __init__(self, num_classes: PositiveInt = 1000) -> None:
        super().__init__(num_classes=num_classes)

    @staticmethod
    def named_weights() -> dict[str, Callable[[], dict[str, Any]]]:
        """torchvision's weights for it by name, each downloaded on first use (torchvision caches them)."""
        return {name: weights.get_state_dict for name, weights in AlexNet_Weights.__members__.items()}

    def hidden(self, images: torch.Tensor) -> torch.Tensor:
        """FC7's 4096 outputs after the ReLU."""
        x = torch.flatten(self.avgpool(self.features(images)), 1)
        return self.classifier[:-1](x)
