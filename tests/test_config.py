"""Each ablation choice, composed from conf/ with Hydra's compose API, changes exactly what it names."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
import submitit
import torch
from hydra.utils import get_object, instantiate
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError
from torch import nn

from alexnet_lab import records, settings
from alexnet_lab.errors import UserError
from alexnet_lab.models.alexnet import AlexNet
from conftest import ablation_groups, run_in_process

README = Path(__file__).parents[1] / "README.md"


def leaves(cfg: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(cfg, dict):
        out: dict[str, Any] = {}
        for key, value in cfg.items():
            out.update(leaves(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): cfg}


def changed(compose_cfg, *overrides: str) -> dict[str, tuple[Any, Any]]:
    def resolved(*o: str) -> dict[str, Any]:
        cfg = compose_cfg(*o)
        with open_dict(cfg):
            cfg.pop("hydra")  # resolving hydra.run.dir would claim a run dir
        container = OmegaConf.to_container(cfg, resolve=True)
        assert isinstance(container, dict)
        return leaves(container)

    base, other = resolved(), resolved(*overrides)
    return {k: (base.get(k), other.get(k)) for k in base.keys() | other.keys() if base.get(k) != other.get(k)}


@pytest.mark.parametrize(
    ("override", "key", "default", "value"),
    [
        ("norm=bn", "model.net.norm", "lrn", "bn"),
        ("norm=none", "model.net.norm", "lrn", "none"),
        ("pooling=nonoverlap", "model.net.pooling", "overlap", "nonoverlap"),
        ("activation=tanh", "model.net.activation", "relu", "tanh"),
        ("init=paper", "model.net.init", "caffe", "paper"),
        ("init=kaiming", "model.net.init", "caffe", "kaiming"),
    ],
)
def test_ablation_group_changes_only_its_key(compose_cfg, override, key, default, value) -> None:
    # the group's choice (ablation.<group>, for the reports and W&B) and the net's argument it sets
    group = override.split("=")[0]
    assert changed(compose_cfg, override) == {key: (default, value), f"ablation.{group}": (default, value)}


def test_defaults_are_the_papers_two_column_net_on_one_device(compose_cfg) -> None:
    cfg = compose_cfg()
    net = cfg.model.net
    assert (net.columns, net.norm, net.pooling, net.activation) == (2, "lrn", "overlap", "relu")
    assert net.init == "caffe" and cfg.data.num_classes == 10  # train.yaml's init=caffe, on the sample
    assert compose_cfg("experiment=smoke").model.net.init == "paper"
    assert cfg.trainer.devices == 1 and instantiate(cfg.trainer.strategy) == "auto"


def test_gpus_1_is_the_one_gpu_baseline_on_one_device(compose_cfg) -> None:
    assert changed(compose_cfg, "gpus=1") == {"gpus": (None, 1), "model.net.columns": (2, 1)}


def test_gpus_2_is_two_columns_on_two_devices_with_ddp(compose_cfg) -> None:
    diff = changed(compose_cfg, "gpus=2")
    assert diff == {
        "gpus": (None, 2),
        "trainer.devices": (1, 2),
        "trainer.strategy.devices": (1, 2),
    }


def test_gpus_other_values_give_a_clear_error(compose_cfg) -> None:
    cfg = compose_cfg("gpus=3")
    with pytest.raises(InterpolationResolutionError, match="gpus=3 is not allowed: Input should be 1 or 2"):
        OmegaConf.to_container(cfg.model, resolve=True)


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("norm=bn", lambda net: sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 2),
        (
            "norm=none",
            lambda net: not any(isinstance(m, nn.LocalResponseNorm | nn.BatchNorm2d) for m in net.modules()),
        ),  # fmt: skip
        ("pooling=nonoverlap", lambda net: net.features.pool1.kernel_size == 2),
        ("activation=tanh", lambda net: isinstance(net.features.act1, nn.Tanh)),
        ("gpus=1", lambda net: net.columns == 1 and net.layers["conv1"].out_channels == 48),
    ],
)
def test_choice_reaches_the_instantiated_net(compose_cfg, override, check) -> None:
    assert check(instantiate(compose_cfg(override).model).net)


def test_experiment_paper(compose_cfg) -> None:
    cfg = compose_cfg("experiment=paper", "data.root=/nonexistent")
    assert cfg.trainer.max_epochs == 90  # section 5: "roughly 90 cycles through the training set"
    assert cfg.data.num_classes == 1000 and cfg.data.batch_size == 128 and cfg.gpus == 2
    assert cfg.data._target_.endswith("ImageNetDataModule") and cfg.data.sample is None
    assert cfg.model.net.init == "paper" and cfg.model.schedule == "plateau"
    # the paper's text wherever it and the authors' code or Caffe differ (docs/fidelity.md)
    assert cfg.input_size == cfg.data.crop_size == cfg.model.net.input_size == 224  # sections 3.5, 4.1: 224x224
    assert cfg.model.net.lrn == "paper" and cfg.model.net.dropout_form == "paper" and cfg.model.optimizer == "paper"
    assert (cfg.model.bias_lr_mult, cfg.model.bias_decay_mult) == (1.0, 1.0)  # the paper says nothing of biases
    assert cfg.data.lighting_std == 0.1  # section 4.1


def test_experiment_caffe_is_bvlc_alexnet(compose_cfg) -> None:
    """Against BVLC/caffe models/bvlc_alexnet/ (commit c2aaebd): train_val.prototxt, solver.prototxt, readme.md."""
    cfg = compose_cfg("experiment=caffe", "data.root=/nonexistent")
    assert cfg.input_size == cfg.data.crop_size == 227  # crop_size: 227
    assert cfg.data.batch_size == 256 and cfg.data.mean == "image"  # batch_size: 256; mean_file
    assert cfg.data.lighting_std == 0  # readme: "not training with the relighting data-augmentation"
    assert cfg.data.test_crops == 1  # readme: "using just the center crop"
    model = cfg.model
    assert (model.lr, model.momentum, model.weight_decay) == (0.01, 0.9, 0.0005)  # base_lr, momentum, weight_decay
    assert (model.schedule, model.lr_factor, model.step_iters) == ("step_iters", 0.1, 100000)  # "step", gamma, stepsize
    assert cfg.trainer.max_steps == 450000  # max_iter
    assert model.lr_drops == 450000 // 100000  # base_lr * gamma ^ floor(iter / stepsize): 4 drops before max_iter
    assert (model.bias_lr_mult, model.bias_decay_mult) == (2.0, 0.0)  # lr_mult: 2, decay_mult: 0 on biases
    assert model.net.init == "caffe" and model.net.lrn == "caffe" and model.net.dropout_form == "inverted"
    assert model.optimizer == "paper"  # history = momentum * history + local_rate * diff
    assert cfg.gpus is None and model.net.columns == 2  # one device; group: 2 in conv2, conv4, conv5


def test_the_default_run_departs_from_the_paper_where_the_readme_says(compose_cfg) -> None:
    # README: the default run departs in init, the lr schedule, the dropout form and the optimizer; the net and
    # recipe otherwise are experiment=paper's (but the data, the devices and the run length)
    def model(*overrides: str) -> dict[str, Any]:
        container = OmegaConf.to_container(compose_cfg(*overrides).model, resolve=True)
        assert isinstance(container, dict)
        return leaves(container)

    quick, paper = model(), model("experiment=paper", "gpus=null", "data.root=/x", "data.num_classes=10")
    assert {k for k in quick.keys() | paper.keys() if quick.get(k) != paper.get(k)} == {
        "net.init", "net.dropout_form", "optimizer", "schedule", "step_epochs"}  # fmt: skip


def test_the_readmes_slurm_command_asks_slurm_for_one_task_per_device(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's cluster command, as submitit would submit it (no SLURM here, so nothing is submitted):
    Lightning under SLURM needs one task per device, and the warning signal SLURM sends must be one the
    Preemption callback saves on."""
    line = next(line for line in README.read_text().splitlines() if "hydra/launcher=submitit_slurm" in line)
    command = line.strip("`").split()
    assert command[:3] == ["python", "src/train.py", "-m"] and command[-1] == "..."
    cfg = compose_cfg(*command[3:-1])
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\n")  # submitit only checks that srun exists
    (tmp_path / "bin" / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    # the plugin's launch(): an AutoExecutor, then its params with the cluster's prefix where not generic
    launcher = instantiate(cfg.hydra.launcher)
    params = {k: v for k, v in launcher.params.items() if k not in ("submitit_folder", "max_num_timeout")}
    executor = submitit.AutoExecutor(cluster="slurm", folder=str(tmp_path / "submitit"),
                                     slurm_max_num_timeout=launcher.params["max_num_timeout"])  # fmt: skip
    generic = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
    sbatch = dict(
        line.removeprefix("#SBATCH --").split("=", 1)
        for line in executor._executor._make_submission_file_text("true", "0").splitlines()
        if line.startswith("#SBATCH --")
    )
    assert sbatch["partition"] == "gpu"
    assert int(sbatch["ntasks-per-node"]) == int(sbatch["gpus-per-node"]) == cfg.trainer.devices == 2
    assert type(instantiate(cfg.trainer.strategy)).__name__ == "SweepSafeDDPStrategy"
    warning = sbatch["signal"].split("@")[0]
    assert f"SIG{warning}" in cfg.callbacks.preemption.requeue_signals, "submitit's warning saves and requeues"


@pytest.mark.parametrize("experiment", ["null", "paper", "caffe", "smoke", "fig1", "lenet5"])
@pytest.mark.parametrize("gpus", ["null", "1", "2"])
def test_every_preset_passes_its_schema(compose_cfg, experiment: str, gpus: str) -> None:
    preset = [] if experiment == "null" else [f"experiment={experiment}"]  # null: none, the default run
    cfg = compose_cfg(*preset, f"gpus={gpus}", "data.root=/datasets/x")
    with open_dict(cfg):
        cfg.pop("hydra")
    settings.check_config(cfg, "train")  # raises on the first value out of its range
    small = experiment in ("fig1", "lenet5")
    assert cfg.data._target_.endswith("SmallImageDataModule" if small else "ImageNetDataModule")
    net = cfg.model.net._target_.rpartition(".")[2]
    assert net == {"fig1": "CifarNet", "lenet5": "LeNet5"}.get(experiment, "AlexNet")


def test_a_trainer_argument_added_with_plus_reaches_the_trainer(compose_cfg) -> None:
    cfg = compose_cfg("experiment=smoke", "logger=csv", "+trainer.gradient_clip_val=0.5")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.gradient_clip_val == 0.5


def test_the_papers_dropout_and_the_readmes_plateau_patience(compose_cfg) -> None:
    module = instantiate(compose_cfg("experiment=paper", "gpus=null", "data.root=/x", "data.num_classes=10").model)
    # Section 4.2: FC6 and FC7 zero each unit with probability 0.5 in training, and multiply by 0.5 at test time
    dropouts = [m for m in module.net.modules() if "drop" in type(m).__name__.lower()]
    assert len(dropouts) == 2
    torch.manual_seed(0)
    ones = torch.ones(100_000)
    for dropout in dropouts:
        kept = dropout.train()(ones)
        assert set(kept.unique().tolist()) == {0.0, 1.0} and abs(kept.mean().item() - 0.5) < 0.01
        assert torch.equal(dropout.eval()(ones), torch.full_like(ones, 0.5))
    # README: "the plateau patience (5 epochs)": the lr is divided after the 6th epoch without improvement
    patience = int(re.search(r"the plateau patience \((\d+) epochs\)", README.read_text())[1])  # type: ignore[index]
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    optimizer = scheduler.optimizer
    lrs = []
    for error in [0.9] + [0.9] * (patience + 1):  # the first epoch sets the best error; the rest do not improve
        scheduler.step(error)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.01] * (patience + 1) + [0.001])


def test_each_ablation_group_is_a_folder_with_a_file_per_choice_of_alexnets_argument() -> None:
    """conf/<group>/<choice>.yaml for every choice of AlexNet's Literal of that name, and no other file: the
    Literal is the choice's one source, which the files must follow."""
    annotations = typing.get_type_hints(AlexNet.__init__, include_extras=True)
    conf = Path(__file__).parents[1] / "conf"
    assert ablation_groups() == ["activation", "init", "norm", "pooling"]  # the paper's four
    for group in ablation_groups():
        files = {path.stem for path in (conf / group).glob("*.yaml")}
        assert files == set(typing.get_args(annotations[group])), group
        for choice in files:  # each sets ablation.<group> to its own name
            assert OmegaConf.load(conf / group / f"{choice}.yaml") == {group: choice}


def test_conf_composes_in_a_process_that_calls_nothing_in_the_package(tmp_path: Path) -> None:
    """A notebook's compose() and instantiate(), with no call into alexnet_lab: Hydra's plugin discovery registers
    the resolvers conf/ names (hydra_plugins/alexnet_lab)."""
    conf = Path(__file__).parents[1] / "conf"
    script = (
        "from hydra import compose, initialize_config_dir\n"
        "from hydra.utils import get_object, instantiate\n"
        f"with initialize_config_dir(version_base='1.3', config_dir={str(conf)!r}):\n"
        "    cfg = compose('train', overrides=['gpus=1', 'experiment=smoke'])\n"
        "net = instantiate(cfg.model.net)\n"
        "print(type(net).__name__, net.columns, cfg.trainer.devices, cfg.ablation.norm)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["AlexNet", "1", "1", "lrn"]


def test_help_lists_the_groups_a_user_chooses_and_no_other(tmp_path: Path) -> None:
    result = run_in_process("train.py", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    groups = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0] for line in groups.splitlines() if ": " in line}
    assert listed == {"activation", "callbacks", "data", "data_model", "debug", "experiment", "hparams_search",
                      "init", "logger", "model", "norm", "paths", "pooling", "trainer"}  # fmt: skip
    assert "data_model: sample_alexnet" in groups and not (tmp_path / "outputs").exists()


def nodes_with_targets() -> dict[str, tuple[Any, dict[str, Any]]]:
    """The base files whose nodes name a class: (the class, the node as written)."""
    conf = Path(__file__).parents[1] / "conf"
    found = {"recipe.yaml": OmegaConf.load(conf / "recipe.yaml")}
    found["model/alexnet.yaml: net"] = OmegaConf.load(conf / "model" / "alexnet.yaml").net
    for name in ("imagenet", "cifar10", "mnist"):
        found[f"data/{name}.yaml"] = OmegaConf.load(conf / "data" / f"{name}.yaml")
    return {name: (get_object(node._target_), OmegaConf.to_container(node)) for name, node in found.items()}


@pytest.mark.parametrize("name", list(nodes_with_targets()))
def test_each_base_file_states_every_argument_and_its_default(name: str) -> None:
    """The files a user edits show every argument of their class, with its default where the file states a value
    (not an interpolation): the two places cannot drift apart."""
    target, node = nodes_with_targets()[name]
    parameters = inspect.signature(target).parameters
    stated = {key for key in node if not key.startswith("_")}
    assert stated == set(parameters) - {"net"}, f"{name}: every argument of {target.__name__}, and no other"
    for key in stated:
        default = parameters[key].default
        if default is not inspect.Parameter.empty and not str(node[key]).startswith("${"):
            assert node[key] == default, f"{name}: {key}={node[key]!r}, and {target.__name__}'s default {default!r}"


# each model with data it reads (the sample's JPEGs for the ImageNet nets)
MODEL_DATA = {"alexnet": [], "lenet5": ["data=mnist_sample"], "cifar_net": ["data=cifar10_sample"],
              "torchvision_alexnet": []}  # fmt: skip


@pytest.mark.parametrize("model", MODEL_DATA)
@pytest.mark.parametrize("group", ["norm", "pooling", "activation", "init"])
def test_a_choice_in_an_ablation_group_that_the_net_does_not_take_is_refused_and_left_out_of_its_records(
    compose_cfg, model: str, group: str
) -> None:
    """The expectation is the net's own signature: a group that names none of its arguments changes nothing, so
    choosing it is a mistake, and a run does not name it among its choices (log line, W&B tags)."""
    choice = typing.get_args(typing.get_type_hints(AlexNet.__init__, include_extras=True)[group])[
        -1
    ]  # not the default, for every group
    override = f"{group}={choice}"
    cfg = compose_cfg(f"model={model}", *MODEL_DATA[model], override)
    with open_dict(cfg):
        cfg.pop("hydra")
    net = get_object(cfg.model.net._target_)
    if group in inspect.signature(net).parameters:
        settings.check_config(cfg, "train", [override])
        assert override in records.wandb_identity(cfg)["tags"] and f" {override} " in f" {records.choices_line(cfg)} "
    else:
        expected = f"{override} changes nothing: {cfg.model.net._target_} takes no {group} "
        with pytest.raises(UserError, match=re.escape(expected)):
            settings.check_config(cfg, "train", [override])
        settings.check_config(cfg, "train", [])  # the default choice, which nobody asked for, is no mistake
        tags = records.wandb_identity(cfg)["tags"]
        assert not any(t.startswith(f"{group}=") for t in tags) and f" {group}=" not in f" {records.choices_line(cfg)}"


@pytest.mark.parametrize("model", MODEL_DATA)
def test_an_input_size_that_neither_the_net_nor_the_data_takes_is_refused(compose_cfg, model: str) -> None:
    """The expectation is the signatures: input_size=227 changes a run whose net takes an input size
    (AlexNet's ``input_size``) or whose data cut crops of a size (ImageNet's ``crop_size``), and nothing in one
    whose net and data take images of their own size (LeNet-5 on MNIST, Figure 1's net on CIFAR-10)."""
    cfg = compose_cfg(f"model={model}", *MODEL_DATA[model], "input_size=227")
    with open_dict(cfg):
        cfg.pop("hydra")
    net, data = (inspect.signature(get_object(node._target_)).parameters for node in (cfg.model.net, cfg.data))
    if "input_size" in net or "crop_size" in data:
        settings.check_config(cfg, "train", ["input_size=227"])
    else:
        expected = f"input_size=227 changes nothing: neither {cfg.model.net._target_} nor {cfg.data._target_} reads"
        with pytest.raises(UserError, match=re.escape(expected)):
            settings.check_config(cfg, "train", ["input_size=227"])
        settings.check_config(cfg, "train", [])  # the default, which nobody asked for, is no mistake


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=fig1", "~callbacks.figures"],  # the preset's settings for it go unused: the user left it out
        ["callbacks.figures=null"],
        ["experiment=smoke", "~callbacks"],
        ["+callbacks.timer._target_=lightning.pytorch.callbacks.Timer", "+callbacks.timer.duration=00:01:00:00"],
    ],
)
def test_callbacks_left_out_or_added_whole_are_accepted(compose_cfg, overrides: list[str]) -> None:
    """The counterpart of a callback's key with no callback made of it (test_schema.py): Hydra's ways to leave a
    callback out, and a new one with its _target_, start."""
    cfg = compose_cfg(*overrides)
    with open_dict(cfg):
        cfg.pop("hydra")
    settings.check_config(cfg, "train", overrides)
