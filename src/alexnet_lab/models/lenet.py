"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document recognition", 1998),
the other classic of this framework, as a backbone of the same LightningModule.

32x32x1 input (MNIST's 28x28 digits padded by 2); C1: 6 maps 5x5, tanh; S2: 2x2 average pooling, stride 2;
C3: 16 maps 5x5, tanh; S4: 2x2 average pooling; C5: 120 maps 5x5 (1x1 outputs), tanh; F6: 84 units, tanh;
output: 10 units. 61,706 parameters. Departures from the 1998 paper, which this keeps simple: C3 connects
every S2 map to every C3 map (the paper's table I connects each to a subset); S2 and S4 are plain average
pooling (the paper's have a trainable coefficient and bias per map); the output is a linear layer for the
softmax and cross entropy of this framework (the paper's is Euclidean RBF units); tanh is torch's (the
paper's is 1.7159 tanh(2/3 a)).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import torch
from torch import nn

from alexnet_lab.declare import PositiveInt, checked
from alexnet_lab.models.alexnet import ACTIVATIONS

INPUT_SIZE = 32  # "The input is a 32x32 pixel image" (MNIST's 28x28 with 2 pixels of padding)


class LeNet5(nn.Module):
    """Args:
    num_classes: the output units (10 digits).
    activation: ``tanh`` (the paper's squashing function) or ``relu``.
    """

    in_channels, input_size, columns = 1, INPUT_SIZE, 1

    @checked
    def __init__(self, num_classes: PositiveInt = 10, activation: Literal["tanh", "relu"] = "tanh") -> None:
        super().__init__()
        self.activation = activation
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(OrderedDict([
            ("c1", nn.Conv2d(1, 6, 5)), ("act1", act()), ("s2", nn.AvgPool2d(2, 2)),
            ("c3", nn.Conv2d(6, 16, 5)), ("act3", act()), ("s4", nn.AvgPool2d(2, 2)),
            ("c5", nn.Conv2d(16, 120, 5)), ("act5", act()),
        ]))  # fmt: skip
        self.classifier = nn.Sequential(OrderedDict([
            ("f6", nn.Linear(120, 84)), ("act6", act()), ("output", nn.Linear(84, num_classes)),
        ]))  # fmt: skip

    def hidden(self, images: torch.Tensor) -> torch.Tensor:
        """F6's 84 activations: the last hidden layer."""
        f6, act6 = self.classifier[0], self.classifier[1]
        return act6(f6(torch.flatten(self.features(images), 1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(images), 1))
