"""The check of a composed config at start-up, before anything runs (:func:`check_config`): every key against its
declaration (alexnet_lab.declare), a primary config's own keys against :data:`KEYS`. (Hydra's own errors about the
config, an unknown key or a choice that does not exist, are put in one line by alexnet_lab.cli.)"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import lightning
from annotated_types import Ge
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from alexnet_lab.config import Gpus
from alexnet_lab.data.imagenet import TestCrops
from alexnet_lab.data.prepared import prepare
from alexnet_lab.declare import PositiveInt, Seed, check_value
from alexnet_lab.errors import UserError
from alexnet_lab.models.alexnet import InputSize
from alexnet_lab.records import ablation_choices, read_keys

# Every spelling Lightning accepts for Trainer(precision=...), from its own annotation, as strings.
PRECISION: Any = Literal[tuple(dict.fromkeys(str(c) for literal in typing.get_args(
    typing.get_type_hints(lightning.Trainer.__init__)["precision"]) for c in typing.get_args(literal)))]  # fmt: skip


def parameters(target: Any) -> tuple[dict[str, Any], bool]:
    """A callable's (a constructor's) parameter annotations, with Lightning's bounds, and whether it takes **kwargs."""
    if isinstance(target, dict):  # a primary config's keys
        return target, False
    signature = inspect.signature(target)
    function = typing.cast(Any, target).__init__ if isinstance(target, type) else target  # a class: its constructor
    try:
        annotations = typing.get_type_hints(function, include_extras=True)
    except (NameError, TypeError):  # a name its module imports only to type-check: none of its annotations
        annotations = {}
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    found = {name: annotations.get(name, Any) for name, p in signature.parameters.items() if p.kind not in kinds}
    for cls in getattr(target, "__mro__", [target])[::-1]:  # a subclass of a Lightning class: its bounds too
        found.update(LIGHTNING_BOUNDS.get(cls, {}))
    return found, any(p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def check(cfg: DictConfig, declared: Any, path: str = "") -> None:
    """Every value of ``cfg`` against ``declared`` (a callable, a dict of keys, or None: any key), and each node with a
    ``_target_`` against that target's signature. The first one that breaks its declaration raises."""
    params, more = parameters(declared) if declared is not None else ({}, True)
    for key in (str(k) for k in cfg if not (str(k).startswith("_") and str(k).endswith("_"))):
        full = f"{path}{key}"
        if OmegaConf.is_missing(cfg, key):
            raise UserError(f"{full} has no value: set {full}=...")
        if key not in params and not more:
            raise UserError(unknown_argument(full, declared))
        try:
            value = cfg[key]
        except UserError:
            raise
        except Exception:  # an interpolation of what only a running job has (${hydra:...})
            continue
        value = OmegaConf.create(value) if isinstance(value, dict) else value  # a resolver's node
        if isinstance(value, DictConfig):
            check(value, get_object(value._target_) if "_target_" in value else None, f"{full}.")
        elif isinstance(value, ListConfig) and any(isinstance(v, DictConfig) and "_target_" in v for v in value):
            for n, item in enumerate(value):
                check(item, get_object(item._target_), f"{full}[{n}].")
        elif key in params:
            check_value(full, str(value) if params[key] is PRECISION else value, params[key])


def unknown_argument(key: str, target: Any) -> str:  # target: a callable, or a config's KEYS
    where = ", or the preset that sets it (AlexNet's experiment=smoke)" if key.startswith("model.net.") else ""
    owner = f"an argument of {target.__module__}.{target.__qualname__}" if callable(target) else "a key of the config"
    return f"{key} is not {owner}: remove +{key}{where}"


# The primary configs' own keys (their groups' nodes are checked against their targets).
COMMON = {"task_name": str, "seed": Seed, "data": Any, "paths": Any}
# fmt: off
# Lightning's arguments that the configs set, with the bounds its annotations do not state (-1: none, or all).
FromMinusOne = Annotated[int, Ge(-1)]
LIGHTNING_BOUNDS: dict[type, dict[str, Any]] = {
    lightning.Trainer: {**dict.fromkeys(["devices", "num_nodes", "max_epochs", "log_every_n_steps"], PositiveInt),
                        "max_steps": FromMinusOne, "precision": PRECISION},  # "32" and 32: one choice
    lightning.pytorch.callbacks.ModelCheckpoint: {
        **dict.fromkeys(["every_n_epochs", "every_n_train_steps"], PositiveInt), "save_top_k": FromMinusOne},
    lightning.pytorch.callbacks.ModelSummary: {"max_depth": FromMinusOne},
}
KEYS: dict[str, dict[str, Any]] = {
    "train": {**COMMON, "tags": list[str], "gpus": Gpus, "input_size": InputSize, "ckpt_path": str | None,
              "ablation": Any, "model": Any, "trainer": Any, "callbacks": Any, "logger": Any},
    # input_size null: the checkpoint's; ckpt_path: a checkpoint, or a list of them (an ensemble)
    "eval": {**COMMON, "gpus": Gpus, "input_size": InputSize | None, "ckpt_path": Any, "test_crops": list[TestCrops],
             "model": Any, "trainer": Any},
    "figures": {**COMMON, "input_size": InputSize | None, "ckpt_path": str, "max_train_images": PositiveInt | None,
                "batch_size": PositiveInt, "logger": Any},
    # src/prepare.py's: alexnet_lab.data.prepared.prepare's arguments, the images read from source (its root)
    "prepare": {"task_name": str, "paths": Any, "source": str | None,
                **{k: v for k, v in parameters(prepare)[0].items() if k not in ("root", "progress")}},
}
# fmt: on


def check_config(cfg: DictConfig, config_name: str, overrides: Sequence[str] = ()) -> None:
    """At start-up, before any data is read: every value against its declaration; an override (the job's) that would
    change nothing (an ablation group or ``input_size`` that nothing reads, a key of a callback that is not made);
    validation by time in several processes; and the plateau schedule, which needs every epoch validated."""
    check(cfg, KEYS[config_name])
    taken = ablation_choices(cfg)
    for override in overrides:
        if (key := override.lstrip("+~").partition("=")[0]) in (cfg.get("ablation") or {}) and key not in taken:
            raise UserError(f"{override} changes nothing: {cfg.model.net._target_} takes no {key} (of the ablation "
                            f"groups, it takes {', '.join(taken) or 'none'}): leave it out, or use "
                            "model=alexnet")  # fmt: skip
        if key == "input_size" and key not in read_keys(cfg):
            raise UserError(f"{override} changes nothing: neither {cfg.model.net._target_} nor {cfg.data._target_} "
                            "reads input_size (they take images of their own size): leave it out")  # fmt: skip
        callback = (cfg.get("callbacks") or {}).get(key.split(".")[1]) if key.startswith("callbacks.") else None
        if callback is not None and "_target_" not in callback:
            raise UserError(f"{override} changes nothing: callbacks.{key.split('.')[1]} has no _target_, so no "
                            "callback is made of it: give it one, or leave it out")  # fmt: skip
    trainer: Any = cfg.get("trainer") or {}
    if isinstance(trainer.get("val_check_interval"), str | DictConfig) and trainer.devices * trainer.num_nodes > 1:
        raise UserError(f"trainer.val_check_interval={trainer.val_check_interval} is a time, which each process "
                        "measures on its own clock: they would validate at different steps and wait for each other "
                        "for ever; give a number of training batches")  # fmt: skip
    if (cfg.get("model") or {}).get("schedule") != "plateau":
        return
    every, limit = trainer.get("check_val_every_n_epoch", 1), trainer.get("limit_val_batches", 1.0)
    if every != 1 or limit == 0:
        cause = f"trainer.limit_val_batches={limit}" if every == 1 else f"trainer.check_val_every_n_epoch={every}"
        raise UserError(
            f"model.schedule=plateau steps on val/top1_err at every epoch's end, and {cause.replace('None', 'null')} "
            "leaves epochs without it: validate every epoch, or use model.schedule=step"
        )
