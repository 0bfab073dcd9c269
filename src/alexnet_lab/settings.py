"""What each setting of a run may be, and the check of a composed config against it before anything runs.

A setting's type, range and choices are declared once, where the setting is taken:

- a key of a node with ``_target_``: that parameter's annotation in the target's signature, e.g.
  ``Literal["lrn", "bn", "none"]``, ``int | None``, ``list[Width]``, ``Annotated[float, Gt(0)]`` (bounds from
  annotated_types, a hint for the error with ``doc``);
- a primary config's own keys (``gpus``, ``seed``, ...): the fields of its dataclass here (:data:`KEYS`);
- Lightning's arguments: their annotations, with the bounds Lightning leaves out in :data:`LIGHTNING_BOUNDS`.

:func:`check` raises a UserError naming the first key whose value is not allowed, or that its target does not
take; :func:`explain` puts Hydra's errors about the config (an unknown key, a choice that does not exist) in
one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from typing import Annotated, Any, Literal

import annotated_types as at
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from alexnet_lab.config import Gpus
from alexnet_lab.data.imagenet import TestCrops
from alexnet_lab.data.layouts import Layout
from alexnet_lab.data.prepared import Chroma, Quality
from alexnet_lab.declare import PositiveInt, Seed, check_value, hints, rule
from alexnet_lab.errors import UserError
from alexnet_lab.models.alexnet import InputSize


def precisions() -> Any:
    """Every spelling Lightning accepts for Trainer(precision=...), from its own annotation, as strings."""
    import lightning

    declared = inspect.signature(lightning.Trainer).parameters["precision"].annotation
    hints = typing.get_type_hints(lightning.Trainer.__init__)["precision"] if isinstance(declared, str) else declared
    names = dict.fromkeys(str(c) for literal in typing.get_args(hints) for c in typing.get_args(literal))
    return Literal[tuple(names)]


# Lightning's arguments that the configs set, with the bounds its annotations do not state.
LIGHTNING_BOUNDS: dict[str, dict[str, Any]] = {
    "lightning.pytorch.trainer.trainer.Trainer": {
        "devices": PositiveInt,
        "num_nodes": PositiveInt,
        "max_epochs": PositiveInt,
        "max_steps": Annotated[int, at.Ge(-1)],
        "log_every_n_steps": PositiveInt,
        "precision": precisions,
    },
    "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint": {
        "save_top_k": Annotated[int, at.Ge(-1)],
        "every_n_epochs": PositiveInt,
        "every_n_train_steps": PositiveInt,
    },
    "lightning.pytorch.callbacks.model_summary.ModelSummary": {"max_depth": Annotated[int, at.Ge(-1)]},
}


def parameters(target: Any) -> tuple[dict[str, Any], bool]:
    """The annotations of a callable's (a class's constructor's) parameters, with Lightning's bounds, and
    whether it takes more keyword arguments (``**kwargs``)."""
    if dataclasses.is_dataclass(target):
        return typing.get_type_hints(target, include_extras=True), False
    signature = inspect.signature(target)
    annotations = hints(target)
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    found = {name: annotations.get(name, Any) for name, p in signature.parameters.items() if p.kind not in kinds}
    for cls in reversed(getattr(target, "__mro__", [target])):  # a subclass of a Lightning class: its bounds too
        for key, bound in LIGHTNING_BOUNDS.get(target_name(cls), {}).items():
            found[key] = bound() if inspect.isfunction(bound) else bound
    return found, any(p.kind == inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def target_name(target: Any) -> str:
    return f"{target.__module__}.{target.__qualname__}"


def check(cfg: DictConfig, declared: Any, path: str = "", taken: tuple[dict[str, Any], bool] | None = None) -> None:
    """Every value of ``cfg`` against its declaration: ``declared`` (a dataclass or a callable) for the keys
    of this node, each ``_target_``'s signature for the keys of its node. The first one broken raises."""
    params, more = taken if taken is not None else parameters(declared)
    for key in map(str, cfg.keys()):
        full = f"{path}{key}"
        if key.startswith("_") and key.endswith("_"):  # _target_, _convert_, _recursive_, _partial_
            continue
        if OmegaConf.is_missing(cfg, key):
            raise UserError(f"{full} has no value: set {full}=...")
        if declared is not None and key not in params and not more:
            raise UserError(unknown_argument(full, declared))
        spec = rule(params[key]) if key in params else None
        if OmegaConf.is_interpolation(cfg, key) and (spec is None or {Any, str} & set(spec.kinds)):
            continue  # nothing to check, and it may name what only a running job has (${hydra:...})
        value = cfg[key]
        if isinstance(value, DictConfig):
            target = value.get("_target_")
            if target is not None:
                check(value, get_object(target), f"{full}.")
            else:
                check(value, None, f"{full}.", ({}, True))
        elif isinstance(value, ListConfig) and any(isinstance(v, DictConfig) and "_target_" in v for v in value):
            for n, item in enumerate(value):
                check(item, get_object(item._target_), f"{full}[{n}].")
        elif spec is not None:
            check_value(full, value, spec)


def unknown_argument(key: str, target: Any) -> str:
    where = ""
    if key.startswith("model.net."):  # AlexNet's presets set its net's arguments
        where = (
            ", or the preset that sets it (AlexNet's experiment=quickstart, the default, and smoke): give "
            "another net ~experiment (no preset) or its own preset, e.g. experiment=lenet5"
        )
    return f"{key} is not an argument of {target_name(target)}: remove +{key}{where}"


def explain(error: BaseException) -> str | None:
    """One line for an error Hydra raises while composing the config, or None if it is not about the config."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not a choice: use one of {', '.join(error.options)}"
    cause = error.__cause__ or error.__context__  # Hydra raises some with "from", some without
    if isinstance(error, ConfigCompositionException) and isinstance(cause, ConfigAttributeError | ConfigKeyError):
        key, full_key = str(cause.key), str(cause.full_key)
        parent = full_key.rpartition(".")[0]
        keys = [str(k) for k in cause.parent_node] if isinstance(cause.parent_node, DictConfig) else []
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
        where = f" of {parent}" if parent else ""
        return f"{full_key} is not a key{where}: {hint}(to add one, write +{full_key}=...)"
    if isinstance(error, ConfigCompositionException | MissingConfigException):
        return " ".join(str(error).split())
    if isinstance(error, ValueError) and str(error).startswith("Config group override must be"):
        return f"{error}: a group takes the name of one of its options; ~<group> leaves it out (e.g. ~experiment)"
    return None


# -- the primary configs' own keys ----------------------------------------------------------------------------
@dataclasses.dataclass
class TrainKeys:
    """conf/train.yaml's own keys; its groups' nodes are checked against their targets."""

    task_name: str
    gpus: Gpus
    input_size: InputSize
    seed: Seed
    ckpt_path: str | None  # a checkpoint file, or "last"
    ablation: Any  # AlexNet's ablation groups' choices (alexnet_lab.config)
    model: Any
    data: Any
    trainer: Any
    callbacks: Any
    logger: Any
    paths: Any


@dataclasses.dataclass
class EvalKeys:
    """conf/eval.yaml's own keys."""

    task_name: str
    gpus: Gpus
    input_size: InputSize | None  # null: the checkpoint's
    seed: Seed
    ckpt_path: Any  # a checkpoint, or a list of them: an ensemble
    test_crops: list[TestCrops]
    model: Any  # or a net with the weights it is given
    data: Any
    trainer: Any
    paths: Any


@dataclasses.dataclass
class FiguresKeys:
    """conf/figures.yaml's own keys."""

    task_name: str
    input_size: InputSize | None
    seed: Seed
    ckpt_path: str
    max_train_images: PositiveInt | None
    batch_size: PositiveInt
    data: Any
    logger: Any
    paths: Any


@dataclasses.dataclass
class PrepareKeys:
    """conf/prepare.yaml's own keys: src/prepare.py's arguments of alexnet_lab.data.prepared.prepare."""

    task_name: str
    source: str | None
    out: str
    layout: Literal["auto", Layout]
    shard_size: PositiveInt
    quality: Quality
    chroma: Chroma
    workers: PositiveInt | None
    paths: Any


KEYS = {"train": TrainKeys, "eval": EvalKeys, "figures": FiguresKeys, "prepare": PrepareKeys}


def check_config(cfg: DictConfig, config_name: str) -> None:
    """At start-up, before any data is read: every value against its declaration, and the settings that only
    fail together."""
    check(cfg, KEYS[config_name])
    check_plateau_has_validation(cfg)


def check_plateau_has_validation(cfg: DictConfig) -> None:
    """The plateau schedule reads val/top1_err at every epoch's end, so every epoch must validate. Without this
    check the run would stop at the end of its first epoch, before that epoch's checkpoint."""
    model, trainer = cfg.get("model"), cfg.get("trainer")
    if model is None or trainer is None or model.get("schedule") != "plateau":
        return
    every, limit = trainer.get("check_val_every_n_epoch", 1), trainer.get("limit_val_batches", 1.0)
    if every == 1 and limit != 0:
        return
    shown = "null" if every is None else every
    cause = f"trainer.limit_val_batches={limit}" if every == 1 else f"trainer.check_val_every_n_epoch={shown}"
    raise UserError(
        f"model.schedule=plateau steps on val/top1_err at every epoch's end, and {cause} leaves epochs "
        "without it: validate every epoch, or use model.schedule=step"
    )
