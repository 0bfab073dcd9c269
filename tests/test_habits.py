"""A Hydra user's habits, as typed: debug modes, another backbone without a preset, any logger, an Optuna
search, --help on every entry point, and a console free of library notices."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import pytest

from alexnet_lab.cli import NOTICES
from conftest import run_in_process, run_script
from test_train import ok, report_rows, wandb_run

SMOKE = ["experiment=smoke", "logger=csv"]


def metric_rows(run_dir: Path, name: str = "csv") -> list[dict[str, str]]:
    with open(run_dir / name / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow(30)
@pytest.mark.parametrize("mode", ["fdr", "overfit", "limit", "profiler"])
def test_each_debug_mode_as_typed(tmp_path: Path, mode: str) -> None:
    run_dir = tmp_path / "run"
    # overfit: a recipe that can learn 24 images by heart in 60 steps (BatchNorm, Kaiming's init, no dropout)
    learns = ["norm=bn", "init=kaiming", "model.net.dropout=0"] if mode == "overfit" else []
    result = run_in_process("train.py", f"debug={mode}", *SMOKE, *learns, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    ok(result)
    checkpoints = (
        {p.name for p in (run_dir / "checkpoints").glob("*.ckpt")} if (run_dir / "checkpoints").is_dir() else set()
    )
    figures = (run_dir / "figures" / "fig3.png").is_file()
    if mode == "fdr":  # one batch each way; Lightning then writes no checkpoint and logs nothing
        assert "Running in `fast_dev_run` mode" in result.stdout + result.stderr
        assert not checkpoints and not figures and not (run_dir / "csv" / "metrics.csv").is_file()
    elif mode == "overfit":  # the same 3 batches of 8 each epoch, of every class (not the first class's images)
        errors = [float(r["train/top1_err"]) for r in metric_rows(run_dir) if r.get("train/top1_err")]
        assert len(errors) == 20 and errors[-1] == 0.0 and errors[0] > 0
        assert not figures and "last.ckpt" in checkpoints
    elif mode == "limit":  # 3 epochs of 3 training batches, each validated, checkpointed and drawn
        rows = metric_rows(run_dir)
        assert sorted({int(r["epoch"]) for r in rows if r.get("train/loss_epoch")}) == [0, 1, 2]
        assert max(int(r["step"]) for r in rows if r.get("train/loss_epoch")) == 3 * 3 - 1
        assert "last.ckpt" in checkpoints and figures
    else:
        profile = (run_dir / "fit-profile.txt").read_text()
        assert "run_training_batch" in profile and not figures


@pytest.mark.slow(40)
def test_another_backbone_without_a_preset(tmp_path: Path) -> None:
    """model=lenet5 data=mnist_sample and model=torchvision_alexnet as typed: the default run's settings for
    AlexNet on the sample (conf/data_model/sample_alexnet.yaml) do not apply to them."""
    lenet = tmp_path / "lenet"
    ok(run_in_process("train.py", "model=lenet5", "data=mnist_sample", "logger=csv", "trainer.max_epochs=1",
                  f"hydra.run.dir={lenet}", cwd=tmp_path))  # fmt: skip
    assert json.loads((lenet / "summary.json").read_text())["params"] == 61_706
    torchvision_net = tmp_path / "torchvision"
    ok(run_in_process("train.py", "model=torchvision_alexnet", "logger=csv", "trainer.max_epochs=1",
                  "+trainer.limit_train_batches=1", "+trainer.limit_val_batches=1",
                  "callbacks.figures.neighbours=false", f"hydra.run.dir={torchvision_net}", cwd=tmp_path))  # fmt: skip
    assert json.loads((torchvision_net / "summary.json").read_text())["params"] == 61_100_840 - 4097 * 990


@pytest.mark.slow(20)
def test_every_logger_node_is_made_and_one_that_cannot_be_stops_the_run_at_start_up(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    extra = "+logger.extra={_target_: lightning.pytorch.loggers.CSVLogger, save_dir: ${paths.output_dir}, name: extra}"
    ok(run_in_process("train.py", *SMOKE, extra, f"hydra.run.dir={run_dir}", cwd=tmp_path))
    assert metric_rows(run_dir) and list((run_dir / "extra").glob("version_*/metrics.csv")), "both loggers wrote"
    bad = tmp_path / "bad"
    tensorboard = "+logger.tb={_target_: lightning.pytorch.loggers.TensorBoardLogger, save_dir: ${paths.output_dir}}"
    result = run_in_process("train.py", *SMOKE, tensorboard, f"hydra.run.dir={bad}", cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and errors[0].startswith("error: logger.tb could not be made: ")
    assert "Traceback" not in result.stderr and not (bad / "checkpoints").exists()


@pytest.mark.slow(60)
def test_an_optuna_search_of_three_trials_on_the_smoke_preset(tmp_path: Path) -> None:
    """Each trial as a grid's job: its own run dir and W&B run in the sweep's group, a row of report.md; Optuna
    minimises the val top-1 error src/train.py returns."""
    sweep = tmp_path / "sweep"
    ok(run_in_process("train.py", "-m", "hparams_search=alexnet_optuna", "experiment=smoke", "hydra.sweeper.n_trials=3",
                  f"hydra.sweep.dir={sweep}", cwd=tmp_path))  # fmt: skip
    jobs = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert jobs == ["0", "1", "2"] and len(report_rows(sweep)) == 3
    results = yaml_load(sweep / "optimization_results.yaml")
    trials = [json.loads((sweep / job / "summary.json").read_text())["val/top1_err"] for job in jobs]
    assert results["best_value"] == pytest.approx(min(trials))
    assert {"model.lr", "model.weight_decay"} == set(results["best_params"])
    assert {wandb_run(sweep / job)[0].run_group for job in jobs} == {sweep.name}


@pytest.mark.slow(40)
def test_an_optuna_trial_that_diverges_scores_inf_and_the_search_goes_on(tmp_path: Path) -> None:
    """Optuna stops a search at a trial that returns nan: a diverged trial scores inf instead. With the sampler's
    seed 0, the first trial draws lr=1000 (it diverges) and the second lr=0.01 (it trains)."""
    sweep = tmp_path / "sweep"
    result = run_in_process("train.py", "-m", "hparams_search=alexnet_optuna", "experiment=smoke", "logger=csv",
                            "hydra.sweeper.n_trials=2", "model.lr=choice(0.01,1000)", f"hydra.sweep.dir={sweep}",
                            cwd=tmp_path)  # fmt: skip
    summaries = [json.loads((sweep / job / "summary.json").read_text()) for job in ("0", "1")]
    assert [s.get("diverged_at_step") is not None for s in summaries] == [True, False], summaries
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors[-1] == f"error: job(s) 0 of the sweep diverged (see {sweep / 'report.md'})"
    results = yaml_load(sweep / "optimization_results.yaml")
    assert results["best_params"]["model.lr"] == 0.01 and results["best_value"] == summaries[1]["val/top1_err"]
    assert len(report_rows(sweep)) == 2


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("script", ["train.py", "eval.py", "figures.py", "prepare.py", "report.py"])
def test_every_entry_script_answers_help(tmp_path: Path, script: str) -> None:
    result = run_in_process(script, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert ("== Configuration groups ==" in result.stdout) == (script != "report.py")
    assert not (tmp_path / "outputs").exists(), "--help runs nothing"


@pytest.mark.slow(20)
def test_a_run_prints_no_library_notices(tmp_path: Path) -> None:
    """Not Lightning's litlogger tip nor its srun hint (an srun on the PATH, as on a cluster's login node), not
    W&B's note on the anonymous setting, not the _pytree deprecation; the run's choices, yes."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    env = {"PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", "WANDB_MODE": "offline"}
    result = run_script("train.py", "experiment=smoke", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=env)
    ok(result)
    printed = result.stdout + result.stderr
    for notice in [*NOTICES, "anonymous setting", "litlogger", "LeafSpec"]:
        assert notice.replace("\\", "") not in printed, notice
    assert "choices: model=alexnet norm=lrn pooling=overlap activation=relu init=paper data=sample_smoke" in printed
    assert sys.executable


@pytest.mark.slow(10)
def test_leaving_out_the_loggers_or_the_callbacks_as_hydra_does(tmp_path: Path) -> None:
    """~callbacks and ~logger, Hydra's way to leave a group out, under a preset that sets some callbacks' keys: a
    run with no callback (the preset's settings for them unused); a run with no logger, once the callback that
    needs one (the lr monitor) is left out too; ~logger alone: Lightning's refusal of that callback, in one line."""
    no_callbacks = tmp_path / "no_callbacks"
    ok(run_in_process("train.py", *SMOKE, "~callbacks", f"hydra.run.dir={no_callbacks}", cwd=tmp_path))
    assert (no_callbacks / "summary.json").is_file() and metric_rows(no_callbacks)
    assert not (no_callbacks / "figures").exists() and not (no_callbacks / "checkpoints").exists()
    no_logger = tmp_path / "no_logger"
    ok(run_in_process("train.py", "experiment=smoke", "~logger", "~callbacks.lr_monitor",
                      f"hydra.run.dir={no_logger}", cwd=tmp_path))  # fmt: skip
    assert (no_logger / "summary.json").is_file() and (no_logger / "checkpoints" / "last.ckpt").is_file()
    assert not (no_logger / "csv").exists() and not (no_logger / "wandb").exists()
    refused = run_in_process("train.py", "experiment=smoke", "~logger", f"hydra.run.dir={tmp_path / 'refused'}",
                             cwd=tmp_path)  # fmt: skip
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 2 and len(errors) == 1, refused.stderr[-3000:]
    assert errors[0].startswith("error: Lightning refused the settings: Cannot use `LearningRateMonitor` callback")


@pytest.mark.slow(5)
@pytest.mark.parametrize(
    # composing (model, data, paths), the net's arguments (norm), the trainer (trainer); "": no preset, the default run
    ("left_out", "preset"),
    [*[(group, "smoke") for group in ("model", "data", "paths", "norm", "trainer")], ("trainer", ""), ("norm", "")],
)
def test_leaving_out_a_group_the_run_reads_is_one_line(tmp_path: Path, left_out: str, preset: str) -> None:
    """~<group> for a group the config or the run reads (the net, the data, the paths, the trainer, an ablation group
    of AlexNet): one error line that names the group and the fix, exit status 2, and no run dir made."""
    run_dir = tmp_path / "run"
    presets = [f"experiment={preset}"] if preset else []
    result = run_in_process("train.py", *presets, f"~{left_out}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors[0] == (f"error: ~{left_out} leaves out {left_out}, which this run reads: put it back, or choose "
                         f"one of its options ({left_out}=...)")  # fmt: skip
    assert not (run_dir / "checkpoints").exists()


@pytest.mark.slow(10)
@pytest.mark.parametrize("logging", ["disabled", "stdout"])
def test_hydras_other_job_logging_choices(tmp_path: Path, logging: str) -> None:
    """hydra/job_logging= replaces the project's logging (each rank's file named apart) with one of Hydra's own,
    which write no log file. (In a process of its own: ``disabled`` disables every logger of the process.)"""
    run_dir = tmp_path / "run"
    ok(run_script("train.py", *SMOKE, f"hydra/job_logging={logging}", f"hydra.run.dir={run_dir}", cwd=tmp_path))
    assert (run_dir / "summary.json").is_file() and not list(run_dir.glob("*.log"))
