"""The configs' schema: Hydra structured configs that give every key a user sets its type and allowed values.

Each dataclass is stored in Hydra's ConfigStore and named in the defaults list of the config it types
(conf/train.yaml, conf/eval.yaml, conf/prepare.yaml, conf/model/*.yaml, conf/data/*.yaml), so Hydra checks
types and key names while it composes: ``trainer.max_epochs=abc`` or ``trainer.max_epoch=3`` stop before
anything runs. The values themselves live in the YAML files (the fields here are ``???`` or ``None``), so each
paper constant is still written once.

OmegaConf has no ranges, so each field's allowed values are in its metadata (:func:`value`), and
:func:`check_values` checks them at start-up, before any data is read. :func:`explain` turns Hydra's and
OmegaConf's errors about the config into one line that names the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException, MissingConfigException
from lightning.fabric.connector import _PRECISION_INPUT
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from alexnet_lab.data.layouts import LAYOUTS
from alexnet_lab.data.prepared import DECODERS
from alexnet_lab.data.transforms import PCA_LIGHTING
from alexnet_lab.errors import UserError
from alexnet_lab.models.alexnet import ACTIVATIONS, DROPOUT_FORMS, INITS, INPUT_SIZES, LRN_READINGS, NORMS, POOLINGS
from alexnet_lab.module import SCHEDULES
from alexnet_lab.optim import OPTIMIZERS

MEAN_MODES = ("image", "channel")
DATA_LAYOUTS = ("auto", *LAYOUTS, "prepared")
CHROMAS = (420, 422, 444)
TEST_CROPS = (1, 10)
# Every spelling Lightning accepts for trainer.precision (its own Literal types).
PRECISIONS = tuple(dict.fromkeys(str(p) for arg in typing.get_args(_PRECISION_INPUT) for p in typing.get_args(arg)))
# lightning.seed_everything (and numpy's generators) take seeds from 0 to 2**32 - 1; every seed key does the same
MAX_SEED = 2**32 - 1
GPUS_HINT = "1: the one-GPU baseline of section 3.2; 2: two columns on two devices; null: two columns on one"


def value(
    default: Any = MISSING,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
    length: int | None = None,
    hint: str | None = None,
) -> Any:
    """A field with allowed values. Bounds and choices apply to a number, a string, or each item of a list;
    ``hint`` says what the choices mean."""
    rules = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, length=length, hint=hint).items()
             if v is not None}  # fmt: skip
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=rules)
    return field(default=default, metadata=rules)


def seed_value() -> Any:
    return value(ge=0, le=MAX_SEED)


# -- model ---------------------------------------------------------------------------------------------------
@dataclass
class NetConf:
    """alexnet_lab.models.AlexNet's arguments."""

    arch: str = value(choices=("alexnet",))
    num_classes: int = value(ge=1)
    columns: int = value(choices=(1, 2))
    widths: list[int] | None = value(None, ge=1, length=5)  # None: the paper's for the column count
    fc_width: int | None = value(None, ge=1)  # None: the paper's 4096
    norm: str = value(choices=NORMS)
    pooling: str = value(choices=POOLINGS)
    activation: str = value(choices=ACTIVATIONS)
    init: str = value(choices=INITS)
    dropout: float = value(ge=0, lt=1)
    dropout_form: str = value(choices=DROPOUT_FORMS)
    input_size: int = value(choices=INPUT_SIZES)
    lrn: str = value(choices=LRN_READINGS)


@dataclass
class ModelConf:
    """alexnet_lab.module.ClassifierModule's arguments (conf/model/alexnet.yaml)."""

    _target_: str = MISSING
    _convert_: str = MISSING
    net: NetConf = field(default_factory=NetConf)
    lr: float = value(gt=0)
    momentum: float = value(ge=0, lt=1)
    weight_decay: float = value(ge=0)
    lr_factor: float = value(gt=0, le=1)
    lr_drops: int = value(ge=0)
    schedule: str = value(choices=SCHEDULES)
    plateau_patience: int = value(ge=0)
    step_epochs: int = value(ge=1)
    step_iters: int = value(ge=1)
    optimizer: str = value(choices=OPTIMIZERS)
    bias_lr_mult: float = value(ge=0)
    bias_decay_mult: float = value(ge=0)
    channels_last: bool = MISSING
    compile: bool = MISSING


@dataclass
class SmallNetConf:
    """alexnet_lab.models.LeNet5's and CifarNet's arguments."""

    arch: str = value(choices=("lenet5", "cifar_net"))
    num_classes: int = value(ge=1)
    activation: str = value(choices=("relu", "tanh"))


@dataclass
class SmallModelConf(ModelConf):
    """conf/model/lenet5.yaml and cifar_net.yaml: the same module, another backbone."""

    net: SmallNetConf = field(default_factory=SmallNetConf)  # type: ignore[assignment]


# -- data ----------------------------------------------------------------------------------------------------
@dataclass
class SampleConf:
    """alexnet_lab.data.sample.write_layout's arguments: the generated dataset."""

    layout: str = value(choices=LAYOUTS)
    num_classes: int = value(ge=1, le=10)  # the sample has ten wnids
    train_per_class: int = value(ge=1)
    val_per_class: int = value(ge=1)
    seed: int = seed_value()


@dataclass
class DataConf:
    """alexnet_lab.data.ImageNetDataModule's arguments (conf/data/imagenet.yaml, sample.yaml)."""

    _target_: str = MISSING
    root: str | None = MISSING
    layout: str = value(choices=DATA_LAYOUTS)
    num_classes: int = value(ge=1)
    batch_size: int = value(ge=1)
    num_workers: int = value(ge=0)
    pin_memory: bool = MISSING
    persistent_workers: bool = MISSING
    mean: str = value(choices=MEAN_MODES)
    lighting_std: float = value(ge=0)
    pca_lighting: str = value(choices=PCA_LIGHTING)
    crop_size: int | None = value(choices=INPUT_SIZES)  # None only in eval, where the checkpoint decides
    test_crops: int = value(choices=TEST_CROPS)
    stats_file: str | None = MISSING
    stats_max_images: int | None = value(ge=1)
    skip_bad_images: bool = MISSING
    fast_dct: bool = MISSING
    decode: str = value(choices=DECODERS, hint="gpu: prepared shards decoded on the model's device")
    seed: int = seed_value()
    sample: SampleConf | None = None


@dataclass
class SmallSampleConf:
    train_per_class: int = value(ge=1)
    val_per_class: int = value(ge=1)
    seed: int = seed_value()


@dataclass
class SmallDataConf:
    """alexnet_lab.data.small.SmallImageDataModule's arguments (conf/data/cifar10*.yaml, mnist*.yaml)."""

    _target_: str = MISSING
    dataset: str = value(choices=("cifar10", "mnist"))
    root: str | None = MISSING
    num_classes: int = value(ge=1)
    batch_size: int = value(ge=1)
    num_workers: int = value(ge=0)
    seed: int = seed_value()
    sample: SmallSampleConf | None = None


# -- trainer, callbacks, loggers, paths ------------------------------------------------------------------------
@dataclass
class TrainerConf:
    """The lightning.Trainer arguments conf/trainer/default.yaml sets. Others are added with ``+trainer.KEY=``."""

    _target_: str = MISSING
    accelerator: str = MISSING
    devices: int = value(ge=1)
    num_nodes: int = value(ge=1)
    strategy: str = MISSING
    max_epochs: int = value(ge=1)
    max_steps: int = value(ge=-1)
    precision: str = value(choices=PRECISIONS)
    use_distributed_sampler: bool = MISSING
    log_every_n_steps: int = value(ge=1)
    enable_progress_bar: bool = MISSING
    enable_model_summary: bool = MISSING
    deterministic: bool = MISSING
    default_root_dir: str = MISSING
    plugins: list[Any] = MISSING


@dataclass
class BestCheckpointConf:
    _target_: str = MISSING
    dirpath: str = MISSING
    filename: str = MISSING
    auto_insert_metric_name: bool = MISSING
    monitor: str = MISSING
    mode: str = value(choices=("min", "max"))
    save_top_k: int = value(ge=-1)


@dataclass
class EpochCheckpointConf:
    _target_: str = MISSING
    dirpath: str = MISSING
    filename: str = MISSING
    monitor: str | None = MISSING
    save_top_k: int = value(ge=-1)
    every_n_epochs: int = value(ge=1)
    enable_version_counter: bool = MISSING


@dataclass
class StepCheckpointConf:
    _target_: str = MISSING
    dirpath: str = MISSING
    filename: str = MISSING
    monitor: str | None = MISSING
    save_top_k: int = value(ge=-1)
    every_n_train_steps: int = value(ge=1)
    enable_version_counter: bool = MISSING


@dataclass
class PreemptionConf:
    _target_: str = MISSING
    dirpath: str = MISSING
    stop_signals: list[str] = MISSING
    requeue_signals: list[str] = MISSING


@dataclass
class LRMonitorConf:
    _target_: str = MISSING
    logging_interval: str = value(choices=("step", "epoch"))


@dataclass
class TargetConf:
    _target_: str = MISSING


@dataclass
class ModelSummaryConf:
    _target_: str = MISSING
    max_depth: int = value(ge=-1)


@dataclass
class FiguresConf:
    _target_: str = MISSING
    dirpath: str = MISSING
    every_n_epochs: int = value(ge=0)
    max_train_images: int | None = value(None, ge=1)
    neighbours: bool = MISSING


@dataclass
class FirstBelowConf:
    _target_: str = MISSING
    metric: str = MISSING
    threshold: float = value(gt=0, le=1)


@dataclass
class CallbacksConf:
    """conf/callbacks/default.yaml. More callbacks are added with ``+callbacks.NAME._target_=...``."""

    model_checkpoint: BestCheckpointConf = field(default_factory=BestCheckpointConf)
    last_checkpoint: EpochCheckpointConf = field(default_factory=EpochCheckpointConf)
    step_checkpoint: StepCheckpointConf = field(default_factory=StepCheckpointConf)
    preemption: PreemptionConf = field(default_factory=PreemptionConf)
    lr_monitor: LRMonitorConf = field(default_factory=LRMonitorConf)
    images_per_sec: TargetConf = field(default_factory=TargetConf)
    model_summary: ModelSummaryConf = field(default_factory=ModelSummaryConf)
    figures: FiguresConf = field(default_factory=FiguresConf)
    first_below: FirstBelowConf | None = None  # experiment=fig1


@dataclass
class CSVLoggerConf:
    _target_: str = MISSING
    save_dir: str = MISSING
    name: str = MISSING
    version: str = MISSING


@dataclass
class WandbLoggerConf:
    _target_: str = MISSING
    project: str = MISSING
    save_dir: str = MISSING


@dataclass
class LoggerConf:
    csv: CSVLoggerConf = field(default_factory=CSVLoggerConf)
    wandb: WandbLoggerConf | None = None  # logger=csv: no W&B


@dataclass
class PathsConf:
    log_dir: str = MISSING
    output_dir: str = MISSING
    cache_dir: str = MISSING


# -- the primary configs ---------------------------------------------------------------------------------------
@dataclass
class TrainConf:
    """conf/train.yaml. ``model`` and ``data`` are typed by their group's option (ModelConf, DataConf)."""

    task_name: str = MISSING
    gpus: int | None = value(None, choices=(1, 2), hint=GPUS_HINT)
    input_size: int = value(choices=INPUT_SIZES)
    seed: int = seed_value()
    ckpt_path: str | None = None
    model: Any = MISSING
    data: Any = MISSING
    trainer: TrainerConf = field(default_factory=TrainerConf)
    callbacks: CallbacksConf = field(default_factory=CallbacksConf)
    logger: LoggerConf = field(default_factory=LoggerConf)
    paths: PathsConf = field(default_factory=PathsConf)


@dataclass
class EvalConf:
    """conf/eval.yaml."""

    task_name: str = MISSING
    gpus: int | None = value(None, choices=(1, 2), hint=GPUS_HINT)
    input_size: int | None = value(None, choices=INPUT_SIZES)
    seed: int = seed_value()
    ckpt_path: Any = MISSING  # a checkpoint, or a list of them: an ensemble
    test_crops: list[int] = value(choices=TEST_CROPS)
    data: Any = MISSING
    trainer: TrainerConf = field(default_factory=TrainerConf)
    paths: PathsConf = field(default_factory=PathsConf)


@dataclass
class PrepareConf:
    """conf/prepare.yaml."""

    task_name: str = MISSING
    source: str | None = MISSING
    out: str = MISSING
    layout: str = value(choices=("auto", *LAYOUTS))
    shard_size: int = value(ge=1)
    quality: int = value(ge=1, le=100)
    chroma: int = value(choices=CHROMAS)
    workers: int | None = value(None, ge=1)
    paths: PathsConf = field(default_factory=PathsConf)


@dataclass
class FiguresEntryConf:
    """conf/figures.yaml."""

    task_name: str = MISSING
    input_size: int | None = value(None, choices=INPUT_SIZES)
    seed: int = seed_value()
    ckpt_path: str = MISSING
    max_train_images: int | None = value(None, ge=1)
    batch_size: int = value(ge=1)
    data: Any = MISSING
    logger: LoggerConf = field(default_factory=LoggerConf)
    paths: PathsConf = field(default_factory=PathsConf)


SCHEMAS: dict[tuple[str | None, str], type] = {
    (None, "train_schema"): TrainConf,
    (None, "eval_schema"): EvalConf,
    (None, "prepare_schema"): PrepareConf,
    (None, "figures_schema"): FiguresEntryConf,
    ("model", "alexnet_schema"): ModelConf,
    ("model", "lenet5_schema"): SmallModelConf,
    ("model", "cifar_net_schema"): SmallModelConf,
    ("data", "imagenet_schema"): DataConf,
    ("data", "small_schema"): SmallDataConf,
}


def register() -> None:
    store = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        store.store(group=group, name=name, node=node)


# -- checking values -------------------------------------------------------------------------------------------
def _type_name(tp: Any, plural: bool = False) -> str:
    names = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
             str: ("a string", "strings")}  # fmt: skip
    if tp in names:
        return names[tp][plural]
    return "values" if plural else "a value"


def allowed(schema: type, key: str) -> str:
    """What ``key`` of ``schema`` accepts, in words: its type, its bounds or choices, and whether null."""
    tp = typing.get_type_hints(schema)[key]
    rules = {f.name: f for f in dataclasses.fields(schema)}[key].metadata
    args = typing.get_args(tp)
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        tp = next(a for a in args if a is not type(None))
    is_list = typing.get_origin(tp) is list
    item = typing.get_args(tp)[0] if is_list else tp
    if "choices" in rules:
        text = "one of " + ", ".join(str(c) for c in rules["choices"])
        text = f"a list of items, each {text}" if is_list else text
    else:
        text = _type_name(item, plural=is_list)
        if is_list:
            text = f"a list of {rules['length']} {text}" if "length" in rules else f"a list of {text}"
        signs = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        bounds = [f"{sign} {rules[k]}" for k, sign in signs if k in rules]
        if bounds:
            text += " " + " and ".join(bounds)
    if optional:
        text += ", or null"
    if "hint" in rules:
        text += f" ({rules['hint']})"
    return text


def _breaks(rules: dict[str, Any], item: Any) -> bool:
    if "choices" in rules and item not in rules["choices"]:
        return True
    checks = {"ge": lambda b: item >= b, "gt": lambda b: item > b, "le": lambda b: item <= b, "lt": lambda b: item < b}
    return any(k in rules and not ok(rules[k]) for k, ok in checks.items())


def check_values(cfg: DictConfig, prefix: str = "") -> None:
    """Every field's bounds and choices (:func:`value`), throughout ``cfg``; the first broken one raises."""
    schema = OmegaConf.get_type(cfg)
    specs = {f.name: f for f in dataclasses.fields(schema)} if dataclasses.is_dataclass(schema) else {}
    for key in map(str, cfg):
        name = f"{prefix}{key}"
        node = cfg._get_node(key)
        if node is not None and node._is_missing():
            raise UserError(f"{name} has no value: set {name}=...")
        if isinstance(node, DictConfig):
            if not node._is_none() and not node._is_missing():
                check_values(node, f"{name}.")
            continue
        spec = specs.get(key)
        if spec is None or not spec.metadata:
            continue
        item = cfg[key]  # resolved
        items = list(item) if isinstance(item, ListConfig) else [item]
        if item is None:
            continue
        length = spec.metadata.get("length")
        if any(_breaks(dict(spec.metadata), i) for i in items) or (length is not None and len(items) != length):
            shown = OmegaConf.to_container(item) if isinstance(item, ListConfig) else item
            assert isinstance(schema, type)
            raise UserError(f"{name}={shown!r} is not allowed: use {allowed(schema, key)}")


def explain(error: BaseException) -> str | None:
    """One line for an error Hydra raises while composing the config, or None if it is not about the config."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group, _, option = error.missing_cfg_file.rpartition("/")
        choices = ", ".join(o for o in error.options if not o.endswith("_schema"))
        return f"{group}={option} is not a choice: use one of {choices}"
    cause = error.__cause__ or error.__context__  # Hydra raises some with "from", some without
    if isinstance(error, ConfigCompositionException) and isinstance(cause, OmegaConfBaseException):
        schema, key, full_key = cause.object_type, str(cause.key), str(cause.full_key)
        if isinstance(cause.parent_node, ListConfig) and cause.parent_node._get_parent() is not None:
            # an item of a list: the list's own key has the type and the rules
            listed = cause.parent_node
            schema, key, full_key = OmegaConf.get_type(listed._get_parent()), str(listed._key()), full_key.split("[")[0]

        parent = full_key.rpartition(".")[0]
        group_file = re.match(r"In '(\w+)/(\w+)'", str(error))
        if isinstance(cause, ConfigAttributeError | ConfigKeyError) and group_file and parent == "model.net":
            # an AlexNet ablation group (norm, pooling, init) merged into another backbone's net
            return (f"{group_file[1]}={group_file[2]} sets {full_key}, which this model's net does not take: "
                    "LeNet-5 and Figure 1's net run as experiment=lenet5 and experiment=fig1, which leave out "
                    "AlexNet's groups")  # fmt: skip
        if isinstance(cause, ConfigAttributeError | ConfigKeyError):
            keys = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else []
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
            where = f" of {parent}" if parent else ""
            return f"{full_key} is not a key{where}: {hint}(to add one, write +{full_key}=...)"
        if isinstance(cause, ValidationError) and dataclasses.is_dataclass(schema) and isinstance(schema, type):
            return f"{full_key}={cause.value!r} is not allowed: use {allowed(schema, key)}"
    if isinstance(error, ConfigCompositionException | MissingConfigException):
        return " ".join(str(error).split())
    return None
