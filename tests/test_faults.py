"""Fault tolerance, on real training processes: SIGKILL and exact resume, a kill during a save, SIGTERM and
SLURM's warning signal, a dead DDP rank, and checkpoints of another configuration."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
import torch

from alexnet_lab.resume import checkpoint_facts
from conftest import REPO, run_script

TESTS = Path(__file__).resolve().parent
# Four training steps per epoch (32 images, batch 8), last.ckpt every two steps, deterministic kernels.
RUN = [
    "experiment=smoke",
    "trainer.deterministic=true",
    "callbacks.step_checkpoint.every_n_train_steps=2",
]


def fault(step: int, signal: str = "SIGKILL", rank: int = 0) -> list[str]:
    return [
        "+callbacks.fault._target_=faults.SignalAtStep",
        f"+callbacks.fault.step={step}",
        f"+callbacks.fault.signal={signal}",
        f"+callbacks.fault.rank={rank}",
    ]


def train(run_dir: Path, *args: str, env: dict[str, str] | None = None,
          timeout: float = 600) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return run_script("train.py", *RUN, *args, f"hydra.run.dir={run_dir}", cwd=run_dir.parent,
                      env={"PYTHONPATH": str(TESTS), **(env or {})}, timeout=timeout)  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)  # every checkpoint loads weights-only


def csv_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow(50)
@pytest.mark.parametrize("gpus", ["null", "2"], ids=["1-process", "2-processes"])
def test_resume_after_sigkill_mid_epoch_is_bitwise_equal(tmp_path: Path, gpus: str) -> None:
    logger = ["logger=csv"] if gpus == "2" else []  # the one-process run also checks the W&B run id
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    ok(train(straight, f"gpus={gpus}", *logger))

    killed = train(resumed, f"gpus={gpus}", *logger, *fault(step=3))
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL
    facts = checkpoint_facts(resumed / "checkpoints" / "last.ckpt")
    assert facts.global_step == 2, "the kill came after the checkpoint of step 2, inside the first epoch"
    ok(train(resumed, f"gpus={gpus}", *logger, "ckpt_path=last"))

    a, b = load(straight / "checkpoints" / "last.ckpt"), load(resumed / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 8 and a["epoch"] == b["epoch"] == 1
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    for state_a, state_b in zip(a["optimizer_states"][0]["state"].values(),
                                b["optimizer_states"][0]["state"].values(), strict=True):  # fmt: skip
        assert torch.equal(state_a["momentum_buffer"], state_b["momentum_buffer"])

    rows = csv_rows(resumed)
    logged = Counter((row["step"], key) for row in rows for key, value in row.items()
                     if value and key not in ("step", "epoch"))  # fmt: skip
    assert logged and max(logged.values()) == 1, "a metric was logged twice at one step"
    train_steps = sorted(int(row["step"]) for row in rows if row["train/loss_step"])
    assert train_steps == list(range(8)), "each training step is in the resumed run's CSV once"
    if not logger:
        runs = sorted((resumed / "wandb").glob("offline-run-*"))
        assert len(runs) == 2 and len({run.name.rsplit("-", 1)[1] for run in runs}) == 1, runs


def test_kill_during_a_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        sys.path.insert(0, {str(REPO / "src")!r})
        from alexnet_lab import resume
        io = resume.AtomicCheckpointIO()
        io.save_checkpoint({{"step": 1, "w": torch.arange(1000.0)}}, {str(path)!r})

        def killed_while_writing(obj, path, *args, **kwargs):
            with open(path, "wb") as f:
                f.write(b"PK" + bytes(4096))  # the start of a zip archive, then nothing
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)

        torch.save = killed_while_writing
        io.save_checkpoint({{"step": 2, "w": torch.zeros(1000)}}, {str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr
    previous = load(path)
    assert previous["step"] == 1 and torch.equal(previous["w"], torch.arange(1000.0))
    partial = list(tmp_path.glob(".last.ckpt.tmp-*"))
    assert len(partial) == 1 and partial[0].stat().st_size == 4098, "the half-written file went elsewhere"

    from alexnet_lab.resume import AtomicCheckpointIO

    AtomicCheckpointIO().save_checkpoint({"step": 3}, path)
    assert load(path)["step"] == 3 and not list(tmp_path.glob(".last.ckpt.tmp-*"))


@pytest.mark.slow(30)
@pytest.mark.parametrize(
    ("signal", "gpus", "slurm"),
    [("SIGTERM", "2", False), ("SIGUSR1", "null", True)],
    ids=["sigterm-2-processes", "slurm-usr1-requeue"],
)
def test_preemption_signal_saves_exits_cleanly_and_resumes(tmp_path: Path, signal: str, gpus: str,
                                                           slurm: bool) -> None:  # fmt: skip
    run_dir = tmp_path / "run"
    env: dict[str, str] = {}
    if slurm:  # a stand-in scontrol records the requeue
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.calls"}\n')
        (bin_dir / "scontrol").chmod(0o755)
        env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    # The signal reaches rank 0 only; the callback forwards it to the other rank.
    result = train(run_dir, f"gpus={gpus}", "logger=csv", *fault(step=2, signal=signal), env=env)
    ok(result)
    saved = f"{signal} received: saved {run_dir / 'checkpoints' / 'last.ckpt'} at step 3"
    assert saved in result.stdout + result.stderr
    assert checkpoint_facts(run_dir / "checkpoints" / "last.ckpt").global_step == 3
    assert not (run_dir / "summary.json").exists(), "the run stopped instead of finishing"
    if slurm:
        assert (tmp_path / "scontrol.calls").read_text().split() == ["requeue", "4242"]
        resumed = train(run_dir, f"gpus={gpus}", "logger=csv", env={**env, "SLURM_RESTART_COUNT": "1"})
    else:
        resumed = train(run_dir, f"gpus={gpus}", "logger=csv", "ckpt_path=last")
    ok(resumed)
    assert checkpoint_facts(run_dir / "checkpoints" / "last.ckpt").global_step == 8
    train_steps = sorted(int(row["step"]) for row in csv_rows(run_dir) if row["train/loss_step"])
    assert train_steps == list(range(8))


@pytest.mark.slow(20)
def test_a_killed_rank_ends_the_job_naming_it(tmp_path: Path) -> None:
    # A hang would raise TimeoutExpired: the whole run, start-up included, gets 180 s, where a healthy smoke
    # run takes about 20 s (the watchdogs poll every 0.2 s).
    result = train(tmp_path / "run", "gpus=2", "logger=csv", *fault(step=2, rank=1), timeout=180)
    assert result.returncode != 0
    assert "error: DDP rank 1 (pid " in result.stderr and "was killed by SIGKILL" in result.stderr


@pytest.mark.slow(20)
def test_checkpoint_of_another_configuration_names_the_mismatch(tmp_path: Path) -> None:
    first = tmp_path / "first"
    ok(train(first, "logger=csv", "trainer.max_epochs=1"))
    result = train(tmp_path / "second", "logger=csv", "pooling=nonoverlap", "model.net.widths=[16,32,32,32,16]",
                   f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "pooling: checkpoint 'overlap' vs this run 'nonoverlap'" in errors[0]
    assert "widths: checkpoint [16, 32, 32, 32, 32] vs this run [16, 32, 32, 32, 16]" in errors[0]
