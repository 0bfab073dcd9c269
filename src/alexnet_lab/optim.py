"""Section 5's update rule, and the parameter groups of the bias multipliers.

The paper writes, for momentum 0.9 and weight decay 0.0005,

    v <- 0.9 v - 0.0005 eps w - eps dL/dw
    w <- w + v

so the velocity carries the learning rate eps. torch.optim.SGD keeps a buffer without it (b <- m b + g + d w,
w <- w - eps b): the same steps while eps is constant, but when eps is divided by 10 torch's next step shrinks at
once, while the paper's velocity still holds about 1 / (1 - 0.9) = 10 steps' worth at the old rate. cuda-convnet
(the authors' code) and Caffe's SGD solver update this way too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


class PaperSGD(torch.optim.Optimizer):
    """SGD with momentum as written in section 5 (see the module doc). ``lr``, ``momentum`` and
    ``weight_decay`` are per parameter group, as in torch.optim.SGD, so lr schedulers work unchanged."""

    def __init__(self, params: Iterable[Any], lr: float, momentum: float, weight_decay: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                velocity = state["velocity"].mul_(momentum)
                if decay:
                    velocity.add_(p, alpha=-lr * decay)
                p.add_(velocity.add_(p.grad, alpha=-lr))
        return loss


def parameter_groups(
    module: nn.Module, lr: float, weight_decay: float, bias_lr_mult: float, bias_decay_mult: float
) -> list[dict[str, Any]]:
    """One group for everything when the multipliers are 1 (the paper says nothing of biases); else the weights
    and the biases (parameters named ``*.bias``) apart, the biases at ``bias_lr_mult`` times the lr and
    ``bias_decay_mult`` times the weight decay (the authors' and Caffe's: 2 and 0). A group that states no lr or
    weight decay takes the optimizer's, ``lr`` and ``weight_decay``; ``name`` is what the lr is logged as."""
    params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    if bias_lr_mult == 1 and bias_decay_mult == 1:
        return [{"params": [p for _, p in params]}]
    weights = [p for name, p in params if not name.endswith(".bias")]
    biases = [p for name, p in params if name.endswith(".bias")]
    return [
        {"params": weights, "name": "weights"},
        {"params": biases, "lr": lr * bias_lr_mult, "weight_decay": weight_decay * bias_decay_mult, "name": "biases"},
    ]
