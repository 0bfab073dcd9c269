"""A user's mistake in the config ends at start-up, before any data is read, with one `error:` line that names the
key, the value and what is allowed, and exit status 2 (alexnet_lab/settings.py, alexnet_lab/cli.py)."""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import lightning
import pytest
import torch
from omegaconf import open_dict

from alexnet_lab import settings
from alexnet_lab.module import ClassifierModule
from conftest import run_in_process, run_script

# the smoke preset on a sample that no test generates: if it appears, data were read
NEW_SAMPLE = ["experiment=smoke", "logger=csv", "data.sample.seed=777"]


@pytest.fixture
def start(tmp_path: Path):
    """Runs ``src/<script>.py overrides...`` in this process, as ``python src/<script>.py`` does, and returns the
    exit status and the error lines on stderr."""

    def _start(script: str, *overrides: str) -> tuple[int, list[str]]:
        result = run_in_process(f"{script}.py", *overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
        assert "Traceback" not in result.stderr
        return result.returncode, [line for line in result.stderr.splitlines() if line.startswith("error:")]

    return _start


def sample_was_read(cache_dir: Path) -> bool:
    return any("seed777" in p.name for p in cache_dir.iterdir())


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epochs=abc", "error: trainer.max_epochs='abc' is not allowed: Input should be a valid integer"),
        ("model.lr=fast", "error: model.lr='fast' is not allowed: Input should be a valid number"),
        ("data.batch_size=1.5", "error: data.batch_size=1.5 is not allowed: Input should be a valid integer"),
        ("seed=x", "error: seed='x' is not allowed: Input should be a valid integer"),
        ("model.net.widths=[a,b,c,d,e]",
         "error: model.net.widths[0]='a' is not allowed: "
         "Input should be a valid integer"),
        ("callbacks.step_checkpoint.every_n_train_steps=often",
         "error: callbacks.step_checkpoint.every_n_train_steps='often' is not allowed: "
         "Input should be a valid integer"),
        ("data.pin_memory=maybe", "error: data.pin_memory='maybe' is not allowed: Input should be a valid boolean"),
        # a boolean is not an integer, nor a number
        ("seed=true", "error: seed=True is not allowed: Input should be a valid integer"),
        ("trainer.max_epochs=true", "error: trainer.max_epochs=True is not allowed: Input should be a valid integer"),
        ("model.lr=false", "error: model.lr=False is not allowed: Input should be a valid number"),
    ],
)  # fmt: skip
def test_a_value_of_the_wrong_type(start, cache_dir: Path, override: str, expected: str) -> None:
    status, errors = start("train", *NEW_SAMPLE, override)
    assert status == 2 and len(errors) == 1 and errors[0].startswith(expected), errors
    assert not sample_was_read(cache_dir)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.lr=-1", "error: model.lr=-1 is not allowed: Input should be greater than 0"),
        ("model.momentum=1.0", "error: model.momentum=1.0 is not allowed: Input should be less than 1"),
        ("model.net.dropout=1", "error: model.net.dropout=1 is not allowed: Input should be less than 1"),
        ("data.num_workers=-2",
         "error: data.num_workers=-2 is not allowed: "
         "Input should be greater than or equal to 0"),
        ("model.net.norm=foo", "error: model.net.norm='foo' is not allowed: Input should be 'lrn', 'bn' or 'none'"),
        ("data.test_crops=5", "error: data.test_crops=5 is not allowed: Input should be 1 or 10"),
        ("gpus=3", "error: gpus=3 is not allowed: Input should be 1 or 2"),
        ("trainer.precision=17",
         "error: trainer.precision='17' is not allowed: "
         "Input should be '64', '32', '16', 'transformer-engine', "),
        ("callbacks.step_checkpoint.every_n_train_steps=0",
         "error: callbacks.step_checkpoint.every_n_train_steps=0 is not allowed: "
         "Input should be greater than or equal to 1"),
        ("model.net.widths=[16,32]",
         "error: model.net.widths=[16, 32] is not allowed: "
         "Value should have at least 5 items after validation, not 2"),
        ("data.sample.num_classes=11",
         "error: data.sample.num_classes=11 is not allowed: Input should be less than or equal to 10"),
        # lightning.seed_everything and numpy take seeds from 0 to 2**32 - 1 = 4294967295
        ("seed=-1", "error: seed=-1 is not allowed: Input should be greater than or equal to 0"),
        ("data.seed=4294967296",
         "error: data.seed=4294967296 is not allowed: "
         "Input should be less than or equal to 4294967295"),
        ("data.sample.seed=-5",
         "error: data.sample.seed=-5 is not allowed: "
         "Input should be greater than or equal to 0"),
    ],
)  # fmt: skip
def test_a_value_out_of_range(start, cache_dir: Path, override: str, expected: str) -> None:
    status, errors = start("train", *NEW_SAMPLE, override)
    assert status == 2 and len(errors) == 1 and errors[0].startswith(expected), errors
    assert not sample_was_read(cache_dir)


def test_a_value_left_unset(start, tmp_path: Path) -> None:
    status, errors = start("prepare", f"source={tmp_path}")  # conf/prepare.yaml: out: ???
    assert status == 2 and errors == ["error: out has no value: set out=..."]


def test_precision_choices_are_lightnings() -> None:
    # every spelling Lightning 2.x documents for Trainer(precision=...), and no other
    documented = {"transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
                  "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16"}  # fmt: skip
    assert set(typing.get_args(settings.PRECISION)) == documented


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer.max_epoch=3",
         "error: trainer.max_epoch is not a key of trainer: did you mean trainer.max_epochs? (to add one, write "
         "+trainer.max_epoch=...)"),
        ("data.batchsize=8", "error: data.batchsize is not a key of data: did you mean data.batch_size?"),
        ("model.net.dropuot=0.1",
         "error: model.net.dropuot is not a key of model.net: did you mean model.net.dropout?"),
        ("colums=1", "error: colums is not a key: "),
        ("+trainer.max_epoch=3",
         "error: trainer.max_epoch is not an argument of lightning.pytorch.trainer.trainer.Trainer: remove "
         "+trainer.max_epoch"),
        ("+colums=1", "error: colums is not a key of the config: remove +colums"),
        ("pooling=overlapping", "error: pooling=overlapping is not a choice: use one of nonoverlap, overlap"),
        # the smoke preset narrows AlexNet's layers; model=lenet5 runs without it (tests/test_figures.py)
        ("model=lenet5", "error: model.net.widths is not an argument of alexnet_lab.models.lenet.LeNet5: remove "
                         "+model.net.widths, or the preset that sets it (AlexNet's experiment=smoke)"),
    ],
)  # fmt: skip
def test_an_unknown_key_or_choice(start, cache_dir: Path, override: str, expected: str) -> None:
    status, errors = start("train", *NEW_SAMPLE, override)
    assert status == 2 and len(errors) == 1 and errors[0].startswith(expected), errors
    assert not sample_was_read(cache_dir)


@pytest.fixture
def not_checkpoints(tmp_path: Path) -> dict[str, Path]:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    other = tmp_path / "other.ckpt"
    torch.save({"weights": torch.zeros(3)}, other)  # loadable, but not one of ours
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": {}}, "global_step": 1}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    return {"text": text, "other": other, "truncated": truncated}


@pytest.mark.parametrize("script", ["train", "eval"])
@pytest.mark.parametrize("kind", ["text", "other", "truncated"])
def test_a_file_that_is_not_a_checkpoint(start, cache_dir: Path, not_checkpoints: dict[str, Path], script: str,
                                         kind: str) -> None:  # fmt: skip
    path = not_checkpoints[kind]
    before = path.read_bytes()
    data = NEW_SAMPLE if script == "train" else ["data.sample.seed=777"]
    status, errors = start(script, *data, f"ckpt_path={path}")
    assert status == 2 and len(errors) == 1, errors
    assert errors[0].startswith(f"error: ckpt_path={path} is not a checkpoint")
    assert errors[0].endswith("give a .ckpt file from a run's checkpoints/ folder")
    if kind == "other":
        assert "(it has no state_dict, hyper_parameters, global_step)" in errors[0]
    assert path.read_bytes() == before and not sample_was_read(cache_dir)


@pytest.mark.parametrize(
    ("script", "override", "expected"),
    [
        ("eval", "test_crops=[1,5]", "error: test_crops[1]=5 is not allowed: Input should be 1 or 10"),
        ("prepare", "quality=101", "error: quality=101 is not allowed: Input should be less than or equal to 100"),
        ("prepare", "chroma=411", "error: chroma=411 is not allowed: Input should be 420, 422 or 444"),
        ("prepare", "workers=0", "error: workers=0 is not allowed: Input should be greater than or equal to 1"),
        ("prepare", "shard_size=true", "error: shard_size=True is not allowed: Input should be a valid integer"),
        (
            "prepare",
            "layout=zip",
            "error: layout='zip' is not allowed: Input should be 'auto', 'folders', 'archives' or 'kaggle'",
        ),
        ("prepare", "+progress=false", "error: progress is not a key of the config: remove +progress"),
    ],
)
def test_the_other_entry_points_check_their_keys(start, tmp_path: Path, script: str, override: str,
                                                 expected: str) -> None:  # fmt: skip
    args = ["ckpt_path=x.ckpt"] if script == "eval" else [f"source={tmp_path}", f"out={tmp_path / 'out'}"]
    status, errors = start(script, *args, override)
    assert status == 2 and errors == [expected], errors
    assert not (tmp_path / "out").exists()


@pytest.mark.slow(12)
def test_the_error_as_a_user_sees_it(tmp_path: Path) -> None:
    """The same, in a process of its own, as a user runs it."""
    override = "trainer.max_epochs=abc"
    result = run_script("train.py", *NEW_SAMPLE, override, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {override.split('=')[0]}=")
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        result.stderr.strip().splitlines()[-1]
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("script", ["train", "eval"])
@pytest.mark.parametrize("has_last", [True, False])
def test_a_folder_given_as_checkpoint(start, cache_dir: Path, tmp_path: Path, script: str, has_last: bool) -> None:
    run_dir = tmp_path / "outputs" / "train" / "runs" / "2026-01-01_00-00-00"
    (run_dir / "checkpoints").mkdir(parents=True)
    if has_last:
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    data = NEW_SAMPLE if script == "train" else ["data.sample.seed=777"]
    status, errors = start(script, *data, f"ckpt_path={run_dir}")
    example = f" such as {run_dir / 'checkpoints' / 'last.ckpt'}" if has_last else ""
    assert status == 2 and errors == [f"error: ckpt_path={run_dir} is a folder, not a checkpoint: give a .ckpt file"
                                      f"{example}"]  # fmt: skip
    assert not sample_was_read(cache_dir)


@pytest.mark.parametrize(
    ("override", "cause"),
    [
        ("+trainer.check_val_every_n_epoch=2", "trainer.check_val_every_n_epoch=2"),
        ("+trainer.check_val_every_n_epoch=null", "trainer.check_val_every_n_epoch=null"),
        ("+trainer.limit_val_batches=0", "trainer.limit_val_batches=0"),
    ],
)
@pytest.mark.parametrize("experiment", ["smoke", "paper"])  # paper: the plateau schedule is its own
def test_the_plateau_schedule_without_validation_every_epoch(start, cache_dir: Path, tmp_path: Path, override: str,
                                                             cause: str, experiment: str) -> None:  # fmt: skip
    # it would train an epoch, then stop before that epoch's checkpoint
    if experiment == "smoke":
        settings = [*NEW_SAMPLE, "model.schedule=plateau"]
    else:
        settings = ["experiment=paper", "data=sample", "data.sample.seed=777"]
    status, errors = start("train", *settings, override)
    assert status == 2 and errors == [
        f"error: model.schedule=plateau steps on val/top1_err at every epoch's end, and {cause} leaves epochs "
        "without it: validate every epoch, or use model.schedule=step"
    ]
    assert not sample_was_read(cache_dir) and not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(("interval", "shown"), [('"00:00:10:00"', "00:00:10:00"), ("{minutes:10}", "{'minutes': 10}")])
@pytest.mark.parametrize("processes", ["gpus=2", "trainer.num_nodes=2"])
def test_validation_by_time_in_several_processes_is_refused(start, cache_dir: Path, compose_cfg, interval: str,
                                                            shown: str, processes: str) -> None:  # fmt: skip
    """Lightning decides a validation by time on each process's own clock, and its ranks would disagree on the step
    to validate at, each waiting for the others' collective; in one process it is a choice like any other."""
    status, errors = start("train", *NEW_SAMPLE, processes, f"+trainer.val_check_interval={interval}")
    assert status == 2 and errors == [
        f"error: trainer.val_check_interval={shown} is a time, which each process measures on its own clock: they "
        "would validate at different steps and wait for each other for ever; give a number of training batches"
    ]
    assert not sample_was_read(cache_dir)
    alone = compose_cfg(*NEW_SAMPLE, f"+trainer.val_check_interval={interval}")
    with open_dict(alone):
        del alone["hydra"]
    settings.check_config(alone, "train")  # one process: accepted


LIGHTNING_REFUSALS = [
    ("+trainer.gradient_clip_algorithm=foo",
     "error: Lightning refused the settings: `gradient_clip_algorithm` foo is invalid. Allowed algorithms: "
     "['value', 'norm']."),
    pytest.param(
        "trainer.accelerator=mps",
        "error: Lightning refused the settings: `MPSAccelerator` can not run on your system since the accelerator is "
        "not available. ",
        marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS"),
    ),
]  # fmt: skip


@pytest.mark.parametrize("script", ["train", "eval"])
@pytest.mark.parametrize(("override", "expected"), LIGHTNING_REFUSALS)
def test_settings_lightning_refuses(start, cache_dir: Path, tmp_path: Path, script: str, override: str,
                                    expected: str) -> None:  # fmt: skip
    # Lightning's own words on one line, not Hydra's report of the Trainer's instantiation over several
    if script == "train":
        settings = NEW_SAMPLE
    else:  # eval makes its trainer after reading the checkpoint: give it a real one, of a narrow net
        net = {"_target_": "alexnet_lab.models.AlexNet", "num_classes": 10, "widths": [8, 8, 8, 8, 8], "fc_width": 8}
        module = ClassifierModule(net=net, lr=0.01, momentum=0.9, weight_decay=5e-4, lr_factor=0.1, lr_drops=3)
        ckpt = tmp_path / "narrow.ckpt"
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "global_step": 0,
                    "pytorch-lightning_version": lightning.__version__}, ckpt)  # fmt: skip
        settings = ["data.sample.seed=777", f"ckpt_path={ckpt}"]
    status, errors = start(script, *settings, override)
    assert status == 2 and len(errors) == 1 and errors[0].startswith(expected), errors
    about_devices = "accelerator" in override
    assert errors[0].endswith(" (gpus=, trainer.accelerator= and trainer.devices= choose the devices)") == about_devices
    assert not sample_was_read(cache_dir)


# both with the plateau schedule (the paper's own; the smoke preset's is a step schedule)
SWEEP_BASES = {"smoke": [*NEW_SAMPLE, "model.schedule=plateau"],
               "paper": ["experiment=paper", "data=sample", "data.sample.seed=777"]}  # fmt: skip


@pytest.mark.parametrize(
    ("sweep", "bad_job", "expected"),
    [
        ("model.lr=0.01,-1", "model.lr=-1", "model.lr=-1 is not allowed: Input should be greater than 0"),
        ("pooling=overlap,overlapping", "pooling=overlapping",
         "pooling=overlapping is not a choice: use one of nonoverlap, overlap"),
        ("trainer.max_epochs=1,abc", "trainer.max_epochs=abc",
         "trainer.max_epochs='abc' is not allowed: Input should be a valid integer"),
        ("+trainer.check_val_every_n_epoch=1,2", "+trainer.check_val_every_n_epoch=2",
         "model.schedule=plateau steps on val/top1_err at every epoch's end, and "
         "trainer.check_val_every_n_epoch=2 leaves epochs without it"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("base", ["smoke", "paper"])
def test_a_mistake_in_a_later_job_of_a_sweep_stops_it_before_the_first(
    start, cache_dir: Path, tmp_path: Path, sweep: str, bad_job: str, expected: str, base: str
) -> None:
    status, errors = start("train", "-m", *SWEEP_BASES[base], sweep)
    assert status == 2 and len(errors) == 1, errors
    job = " ".join([*SWEEP_BASES[base], bad_job])
    assert errors[0].startswith(f"error: {expected}") and errors[0].endswith(f"(in job 1 of the sweep: {job})")
    assert not sample_was_read(cache_dir) and not (tmp_path / "outputs").exists()  # no job ran, no sweep dir


def test_an_error_that_is_not_the_schedulers_keeps_its_own_report_where_submitit_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A machine without submitit (or a run that never submitted a sweep): explaining any other error must not
    # fail on the import and hide the error that happened.
    from alexnet_lab.cli import scheduler_refused

    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "submitit.core.utils", raising=False)
    assert scheduler_refused(ModuleNotFoundError("No module named 'wandb'")) is None


@pytest.mark.parametrize("sweep", [False, True])
def test_a_choice_in_an_ablation_group_that_the_net_does_not_take(
    start, cache_dir: Path, tmp_path: Path, sweep: bool
) -> None:
    # LeNet-5 takes activation= alone: norm= would change nothing, and the jobs of norm=lrn,bn would be the same run
    lenet = ["model=lenet5", "data=mnist_sample", "data.sample.seed=777", "logger=csv"]
    status, errors = start("train", *(["-m", *lenet, "norm=lrn,bn"] if sweep else [*lenet, "norm=bn"]))
    bad = "norm=lrn" if sweep else "norm=bn"
    expected = (f"error: {bad} changes nothing: alexnet_lab.models.LeNet5 takes no norm (of the ablation groups, it "
                "takes activation): leave it out, or use model=alexnet")  # fmt: skip
    assert status == 2 and len(errors) == 1 and errors[0].startswith(expected), errors
    assert errors[0].endswith(f"(in job 0 of the sweep: {' '.join([*lenet, bad])})") == sweep
    assert not sample_was_read(cache_dir) and not (tmp_path / "outputs").exists()


def test_an_input_size_that_the_run_does_not_read(start, cache_dir: Path, tmp_path: Path) -> None:
    # LeNet-5 on MNIST takes 32x32 digits: input_size= would change nothing
    status, errors = start("train", "model=lenet5", "data=mnist_sample", "data.sample.seed=777", "input_size=227")
    expected = ("error: input_size=227 changes nothing: neither alexnet_lab.models.LeNet5 nor "
                "alexnet_lab.data.small.SmallImageDataModule reads input_size")  # fmt: skip
    assert status == 2 and len(errors) == 1 and errors[0].startswith(expected), errors
    assert not sample_was_read(cache_dir) and not (tmp_path / "outputs").exists()


def test_a_callback_key_with_no_callback_made_of_it(start, cache_dir: Path, tmp_path: Path) -> None:
    # a new callback's key without its _target_: train.py makes callbacks of the nodes with one alone
    status, errors = start("train", *NEW_SAMPLE, "+callbacks.mine.every=1")
    expected = ("error: +callbacks.mine.every=1 changes nothing: callbacks.mine has no _target_, so no callback is "
                "made of it: give it one, or leave it out")  # fmt: skip
    assert status == 2 and len(errors) == 1 and errors[0] == expected, errors
    assert not sample_was_read(cache_dir) and not (tmp_path / "outputs").exists()
