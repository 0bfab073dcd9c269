"""Section 5's update rule, v <- 0.9 v - 0.0005 eps w - eps dL/dw, w <- w + v (the velocity carries the learning
rate eps: docs/fidelity.md, "SGD", says how torch.optim.SGD differs), the lr schedules and the bias multipliers'
parameter groups."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import MultiStepLR, ReduceLROnPlateau


class PaperSGD(torch.optim.SGD):
    """Section 5's SGD on torch.optim.SGD's update (foreach, and compilable): torch's buffer b is the paper's
    velocity over -lr, v = -lr b, updated alike while the lr is constant; when a group's lr changes from lr1 to lr2,
    its buffers are multiplied by lr1 / lr2 first, so the velocity keeps its size, as the paper's does. ``lr``,
    ``momentum`` and ``weight_decay`` are per parameter group, so lr schedulers work unchanged; ``lr`` may be a
    tensor (:func:`compile_update`)."""

    def __init__(self, params: Iterable[Any], lr: float | torch.Tensor, momentum: float, weight_decay: float) -> None:
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        for group in self.param_groups:
            lr = group["lr"]
            tensor = isinstance(lr, torch.Tensor)
            held = group.setdefault("velocity_lr", lr.clone() if tensor else lr)  # the lr of the buffers
            if tensor or held != lr:  # a tensor lr (compiled): at every step, inside the graph
                ratio = held / lr
                for p in group["params"]:
                    if (buffer := self.state[p].get("momentum_buffer")) is not None:
                        buffer.mul_(ratio)
                if tensor:
                    held.copy_(lr)
                else:
                    group["velocity_lr"] = lr
        return super().step(closure)


def lr_schedule(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    lr_factor: float,
    lr_drops: int,
    plateau_patience: int,
    step_epochs: int,
    step_iters: int,
) -> dict[str, Any]:
    """Lightning's lr_scheduler entry (the lr logged as lr, or lr/weights and lr/biases with bias multipliers):
    ``plateau``, section 5's "divide the learning rate by 10 when the validation error rate stopped improving",
    lr_drops times (each group down to its own floor); ``step``, every step_epochs epochs; ``step_iters``, every
    step_iters steps (Caffe's lr_policy "step")."""
    if schedule == "plateau":
        floors = [float(group["lr"]) * lr_factor**lr_drops for group in optimizer.param_groups]
        plateau = ReduceLROnPlateau(optimizer, mode="min", factor=lr_factor, patience=plateau_patience, min_lr=floors)
        return {"scheduler": plateau, "monitor": "val/top1_err", "interval": "epoch", "name": "lr"}
    every = step_epochs if schedule == "step" else step_iters
    step = MultiStepLR(optimizer, [every * (i + 1) for i in range(lr_drops)], gamma=lr_factor)
    return {"scheduler": step, "interval": "epoch" if schedule == "step" else "step", "name": "lr"}


def compile_update(optimizer: torch.optim.Optimizer) -> None:
    """Makes ``optimizer.step(closure)`` run the closure as it is (Lightning's forward and backward, compiled with
    the net), then the update as compiled code. Each group's lr becomes a tensor on the CPU, which schedules change
    in place, so a new lr needs no recompilation."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float64)
        if "velocity_lr" in group:
            group["velocity_lr"] = torch.tensor(float(group["velocity_lr"]), dtype=torch.float64)
    eager = optimizer.step
    compiled = torch.compile(eager)

    def step(self: torch.optim.Optimizer, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        (compiled if self.state else eager)()  # the first step creates the state (the velocities) as it goes
        return loss

    optimizer.step = types.MethodType(step, optimizer)  # type: ignore[method-assign]


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
