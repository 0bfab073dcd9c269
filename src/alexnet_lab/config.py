"""OmegaConf resolvers that let one integer key, ``gpus``, drive the net and the trainer.

Hydra rejects numeric option names for config groups (``gpus=1`` with conf/gpus/1.yaml fails with
"Config group override must be a string or a list. Got int"), so ``gpus`` is a plain key and the settings
that follow from it are derived here:

=========  ==========================================  =======  ========
gpus       net                                          devices  strategy
=========  ==========================================  =======  ========
(unset)    the paper's two-column net                   1        auto
1          the one-GPU baseline of section 3.2          1        auto
2          the paper's two-column net (section 3.2)     2        DDP
=========  ==========================================  =======  ========
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from omegaconf import OmegaConf

from alexnet_lab.errors import UserError


def _check_gpus(gpus: Any) -> int | None:
    if gpus is None or (isinstance(gpus, int) and not isinstance(gpus, bool) and gpus in (1, 2)):
        return gpus
    raise UserError(f"gpus={gpus!r} is not a choice: use gpus=1 (one-GPU baseline), gpus=2 (two columns, DDP)")


def columns_for(gpus: Any) -> int:
    return 1 if _check_gpus(gpus) == 1 else 2


def devices_for(gpus: Any) -> int:
    return _check_gpus(gpus) or 1


def strategy_for(devices: int, num_nodes: int) -> str:
    if devices * num_nodes > 1:
        return "ddp_sweep_safe"  # alexnet_lab.launch.SweepSafeDDPStrategy, registered with Lightning
    return "auto"


def isatty() -> bool:
    return sys.stderr.isatty()


def register_resolvers() -> None:
    resolvers: dict[str, Callable[..., Any]] = {
        "isatty": isatty,
        "columns_for": columns_for,
        "devices_for": devices_for,
        "strategy_for": strategy_for,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
