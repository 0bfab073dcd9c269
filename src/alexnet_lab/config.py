"""What conf/ names beyond its files, registered by :func:`register` where an entry point starts: resolvers,
the ablation groups, the nodes of a target's arguments, and the DDP strategy.

Hydra rejects numeric option names for config groups (``gpus=1`` with conf/gpus/1.yaml fails with
"Config group override must be a string or a list. Got int"), so ``gpus`` is a plain key and the settings
that follow from it are derived by resolvers:

=========  ==========================================  =======  ========
gpus       net                                          devices  strategy
=========  ==========================================  =======  ========
(unset)    the paper's two-column net                   1        auto
1          the one-GPU baseline of section 3.2          1        auto
2          the paper's two-column net (section 3.2)     2        DDP
=========  ==========================================  =======  ========
"""

from __future__ import annotations

import inspect
import itertools
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types as at
from omegaconf import MISSING, OmegaConf

from alexnet_lab.cluster import process_rank, slurm_task
from alexnet_lab.errors import UserError
from alexnet_lab.files import HOST

Gpus = Annotated[
    Literal[1, 2] | None,
    at.doc("1: the one-GPU baseline of section 3.2; 2: two columns on two devices; null: two columns on one"),
]


def _check_gpus(gpus: Any) -> int | None:
    """The resolvers' own guard (the start-up check names a wrong value first, alexnet_lab.settings)."""
    from alexnet_lab.declare import describe, rule

    if gpus is not None and (isinstance(gpus, bool) or gpus not in rule(Gpus).kinds[0]):
        raise UserError(f"gpus={gpus!r} is not a choice: use {describe(rule(Gpus))}")
    return gpus


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


_claimed: dict[str, str] = {}


def claim_dir(path: str) -> str:
    """``path`` if this call could create it, else the first free ``path_2``, ``path_3``, ...; the folder is
    created here. ``mkdir`` fails when the folder exists, on a local disk as on a shared one, so two runs that
    start in the same second, on one machine or on several, never share a run dir.

    A task of a SLURM job (its ranks under ``srun``, and the same task after SLURM requeued the job) takes the
    dir its first rank claimed, which a file beside it names (``.slurm-<job>.<step>``): one run dir per job.

    The claim is remembered: Hydra resolves ``hydra.run.dir`` more than once per run, and each time it must
    be the same folder. (The resolver is registered with ``use_cache``, so a config pickled into another
    process, as the submitit launcher does, keeps the value too.)
    """
    if path not in _claimed:
        task = slurm_task()
        _claimed[path] = _claim_for_task(path, task) if task else _claim(path)
    return _claimed[path]


def claimed_dirs() -> set[Path]:
    """The folders this process claimed, as absolute paths."""
    return {Path(claimed).resolve() for claimed in _claimed.values()}


def _claim(path: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for attempt in itertools.count(1):
        candidate = path if attempt == 1 else f"{path}_{attempt}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def _claim_for_task(path: str, task: str) -> str:
    parent = Path(path).parent
    pointer = parent / f".slurm-{task}"
    if not pointer.is_file():
        mine = _claim(path)
        tmp = pointer.with_name(f"{pointer.name}.tmp-{HOST}.{os.getpid()}")
        tmp.write_text(Path(mine).name)
        try:
            os.link(tmp, pointer)  # fails if another rank named its dir first
        except FileExistsError:
            os.rmdir(mine)
        finally:
            tmp.unlink()
    return str(parent / pointer.read_text())


def if_rank_zero(value: Any) -> Any:
    """``value`` in rank 0, null in the other ranks: they write no ``.hydra/`` of their own (rank 0's config is
    theirs), wherever they were started from (Lightning, ``srun``, torchrun)."""
    return value if process_rank() == 0 else None


def rank_suffix() -> str:
    """``_rank<N>`` in rank N > 0, for the file names of its own (``train_rank1.log``); empty in rank 0."""
    rank = process_rank()
    return f"_rank{rank}" if rank else ""


def _defaults(target: Any, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config node of ``target``'s arguments with their defaults (``???`` where it has none)."""
    parameters = inspect.signature(target).parameters.values()
    node = {p.name: MISSING if p.default is p.empty else p.default for p in parameters if p.name not in leave_out}
    return {"_target_": f"{target.__module__}.{target.__qualname__}", **node}


def register() -> None:
    """What the configs name beyond conf/, registered where an entry point starts (and where a job that
    submitit or Lightning starts begins):

    - the ablation groups: for each of AlexNet's arguments in ``ABLATION_GROUPS``, a group with one option per
      choice of its ``Literal`` that sets ``ablation.<group>`` (conf/model/alexnet.yaml passes it on);
    - ``arguments/<name>``: a target's arguments with their defaults, which conf/model/*.yaml and
      conf/data/*.yaml start from;
    - the DDP strategy that works inside a sweep (alexnet_lab.launch), as ``ddp_sweep_safe``.
    """
    from hydra.core.config_store import ConfigStore
    from lightning.pytorch.strategies import StrategyRegistry

    from alexnet_lab.data.imagenet import ImageNetDataModule
    from alexnet_lab.data.small import SmallImageDataModule
    from alexnet_lab.declare import hints
    from alexnet_lab.launch import STRATEGY_NAME, SweepSafeDDPStrategy
    from alexnet_lab.models.alexnet import ABLATION_GROUPS, AlexNet
    from alexnet_lab.module import ClassifierModule

    store = ConfigStore.instance()
    annotations = hints(AlexNet)
    for group in ABLATION_GROUPS:
        for choice in typing.get_args(annotations[group]):
            store.store(group=group, name=str(choice), node={group: choice}, package="ablation")
    store.store(
        group="arguments",
        name="classifier_module",
        node={**_defaults(ClassifierModule, leave_out=("net",)), "_recursive_": False},
    )
    store.store(group="arguments", name="alexnet", node=_defaults(AlexNet))
    store.store(group="arguments", name="imagenet_data", node=_defaults(ImageNetDataModule, leave_out=("sample",)))
    store.store(group="arguments", name="small_data", node=_defaults(SmallImageDataModule, leave_out=("sample",)))
    StrategyRegistry.register(
        STRATEGY_NAME, SweepSafeDDPStrategy, description=SweepSafeDDPStrategy.__doc__, override=True
    )


# Hydra resolves conf/'s interpolations in every process it starts, in a job that submitit unpickles too, before
# any code of ours runs there: the resolvers are registered when this module is imported (nothing else is).
_RESOLVERS: dict[str, Callable[..., Any]] = {
    "if_rank_zero": if_rank_zero,
    "rank_suffix": rank_suffix,
    "isatty": isatty,
    "columns_for": columns_for,
    "devices_for": devices_for,
    "strategy_for": strategy_for,
    "claim_dir": claim_dir,
}
for _name, _resolver in _RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver, use_cache=_name == "claim_dir")
