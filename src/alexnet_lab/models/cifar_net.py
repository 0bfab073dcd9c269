"""Figure 1's four-layer convolutional net for CIFAR-10. The paper does not give it; this is the four-weight-layer
net of the authors' cuda-convnet example ``example-layers/layers-18pct.cfg`` ("18% error on CIFAR-10 in 20
minutes"): conv1 32 5x5 filters, padding 2 -> max pooling 3x3, stride 2, then the neuron -> conv2 32 5x5,
padding 2, neuron -> average pooling 3x3/2 -> conv3 64 5x5, padding 2, neuron -> average pooling 3x3/2 -> fc10.
Its pooling windows start at 0 and cover the image (32 -> 16 -> 8 -> 4), i.e. ceil mode; initW: conv1 0.0001,
the others 0.01; biases 0.

Departures: the file's two response normalisation layers (``rnorm1``, ``rnorm2``: cuda-convnet's within-map,
3x3 neighbourhoods) are left out, since Figure 1 compares the neuron alone and used no regularisation of any
kind; ``activation`` replaces every ReLU (the file's ``neuron=relu``) with tanh for the figure's other curve.
Max pooling and a monotonic neuron commute, so the neuron after pool1 is the neuron before it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

from alexnet_lab.declare import PositiveInt, checked
from alexnet_lab.models.alexnet import ACTIVATIONS

INIT_STD = {"conv1": 1e-4, "conv2": 0.01, "conv3": 0.01, "fc10": 0.01}  # layers-18pct.cfg: initW


class CifarNet(nn.Module):
    in_channels, input_size, columns = 3, 32, 1

    @checked
    def __init__(self, num_classes: PositiveInt = 10, activation: Literal["relu", "tanh"] = "relu") -> None:
        super().__init__()
        self.activation = activation
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(3, 32, 5, padding=2)), ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)), ("act1", act()),
            ("conv2", nn.Conv2d(32, 32, 5, padding=2)), ("act2", act()),
            ("pool2", nn.AvgPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(32, 64, 5, padding=2)), ("act3", act()),
            ("pool3", nn.AvgPool2d(3, 2, ceil_mode=True)),
        ]))  # fmt: skip
        self.fc10 = nn.Linear(64 * 4 * 4, num_classes)
        for name, layer in (*self.features.named_children(), ("fc10", self.fc10)):
            if name in INIT_STD:
                assert isinstance(layer, nn.Conv2d | nn.Linear)
                nn.init.normal_(layer.weight, 0.0, INIT_STD[name])
                assert layer.bias is not None
                nn.init.zeros_(layer.bias)

    def hidden(self, images: torch.Tensor) -> torch.Tensor:
        """pool3's 1024 outputs: the last hidden layer."""
        return torch.flatten(self.features(images), 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc10(self.hidden(images))
