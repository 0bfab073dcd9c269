"""Fault tolerance, on real training processes: SIGKILL and exact resume, a kill during a save, SIGTERM and
SLURM's warning signal, a dead DDP rank, and checkpoints of another configuration."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch
import wandb
from hydra.conf import ConfigSourceInfo
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig, OmegaConf, read_write
from torch.utils.data import DataLoader

from alexnet_lab import compat, launch
from alexnet_lab.errors import UserError
from alexnet_lab.files import atomic_write
from alexnet_lab.module import Diverged
from alexnet_lab.resume import (
    AtomicCheckpointIO,
    CheckpointFacts,
    Preemption,
    ResumableCSVLogger,
    SafeCheckpoint,
    checkpoint_facts,
    make_loggers,
    trainer_plugins,
)
from conftest import made_once, run_in_process, run_script
from faults import SignalAtStep
from sample_layouts import write_layout

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


@pytest.fixture
def default_signals() -> Iterator[None]:
    """SIGTERM, SIGUSR1 and SIGUSR2 at their default action for the test (an earlier Preemption's teardown leaves
    them ignored, which children started here would inherit), and as they were after it."""
    before = {s: signal.getsignal(s) for s in PREEMPTION_SIGNALS}
    for s in PREEMPTION_SIGNALS:
        signal.signal(s, signal.SIG_DFL)
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


TESTS = Path(__file__).resolve().parent
# Four training steps per epoch (32 images, batch 8), last.ckpt every two steps, deterministic kernels.
RUN = [
    "experiment=smoke",
    "trainer.deterministic=true",
    "callbacks.step_checkpoint.every_n_train_steps=2",
]


def fault(step: int, signal: str = "SIGKILL", rank: int = 0, during: str = "train") -> list[str]:
    return [
        "+callbacks.fault._target_=faults.SignalAtStep",
        f"+callbacks.fault.step={step}",
        f"+callbacks.fault.signal={signal}",
        f"+callbacks.fault.rank={rank}",
        f"+callbacks.fault.during={during}",
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


# Three epochs of four steps; step checkpoints every two steps (never at an epoch's last step: see
# alexnet_lab.compat.at_last_batch). With patience 0 the plateau schedule divides the lr as soon as the
# val error does not improve, so a schedule step lost on resume shows in the weights.
RESUME_RUN = ["trainer.max_epochs=3", "model.plateau_patience=0"]
STEPS_PER_EPOCH, EPOCHS = 4, 3


@dataclass(frozen=True)
class Stop:
    """An interruption: ``signal`` after training step ``step`` (or in the validation after it), leaving
    last.ckpt at step ``saved``. SIGKILL ends the run at once; a preemption signal saves and exits 0."""

    signal: str
    during: str
    step: int
    saved: int


# In the order one run meets them, each followed by a resume:
# - killed in epoch 1's validation, after its last step: resumes inside epoch 1 (step 2), redoing the validation;
# - killed at step 5, just after epoch 1's validation and epoch-end checkpoint: resumes at the epoch boundary;
# - killed at step 7, inside epoch 2: resumes inside a later epoch (step 6).
KILLS = [Stop("SIGKILL", "validation", 4, 2), Stop("SIGKILL", "train", 5, 4), Stop("SIGKILL", "train", 7, 6)]
RESUME_CASES = {  # gpus, loader workers, persistent workers, interruptions
    "1-process-0-workers": ("null", 0, "true", KILLS),
    # SLURM's warning signal at step 1: saved, requeued (a stand-in scontrol), resumed by SLURM_RESTART_COUNT
    "1-process-2-workers-slurm-preempted": ("null", 2, "true", [Stop("SIGUSR1", "train", 1, 1), *KILLS]),
    # SIGTERM to rank 0 during epoch 2's validation: forwarded to rank 1, saved after the validation
    "2-processes-0-workers-preempted": ("2", 0, "true", [*KILLS, Stop("SIGTERM", "validation", 8, 8)]),
    "2-processes-2-workers-not-persistent": ("2", 2, "false", KILLS),
}


def straight_run(tmp_path_factory: pytest.TempPathFactory, gpus: str) -> Path:
    """An uninterrupted run, made once per process count and shared by the pytest-xdist workers.

    It uses no loader workers: with any number the data are the same (per-image seeds, tests/test_data.py),
    so a resumed run with workers must equal it too."""

    def make(folder: Path) -> None:
        ok(train(folder / "run", f"gpus={gpus}", "logger=csv", "data.num_workers=0", *RESUME_RUN))

    return made_once(tmp_path_factory, f"straight-gpus{gpus}", make) / "run"


def per_step(run_dir: Path, key: str) -> dict[str, str]:
    return {row["step"]: row[key] for row in csv_rows(run_dir) if row.get(key)}


def in_slurm_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scontrol_status: int = 0) -> None:
    """This process in SLURM job 4242, its scontrol a stand-in that records its arguments and exits with
    ``scontrol_status``."""
    for key, value in slurm_env(tmp_path, scontrol_status).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)


def slurm_env(tmp_path: Path, scontrol_status: int = 0) -> dict[str, str]:
    """A SLURM job whose scontrol is a stand-in that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.calls"}\nexit {scontrol_status}\n'
    )
    (bin_dir / "scontrol").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}


@pytest.mark.slow(90)
@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_after_interruptions_is_bitwise_equal(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                     case: str) -> None:  # fmt: skip
    gpus, workers, persistent, stops = RESUME_CASES[case]
    straight = straight_run(tmp_path_factory, gpus)
    wandb = case == "1-process-0-workers"  # this one also checks that each resume continues the W&B run
    args = [f"gpus={gpus}", *([] if wandb else ["logger=csv"]), f"data.num_workers={workers}",
            f"data.persistent_workers={persistent}", *RESUME_RUN]  # fmt: skip
    resumed = tmp_path / "resumed"
    resume: list[str] = []
    env: dict[str, str] = {}
    for stop in stops:
        if stop.signal == "SIGUSR1":
            env = slurm_env(tmp_path)
        result = train(resumed, *args, *resume, *fault(step=stop.step, signal=stop.signal, during=stop.during), env=env)
        last = resumed / "checkpoints" / "last.ckpt"
        if stop.signal == "SIGKILL":
            assert result.returncode == -9, result.stderr[-3000:]
            resume, env = ["ckpt_path=last"], {}
        else:  # a preemption: saved, exit 0, not finished
            ok(result)
            assert f"{stop.signal} received: saved {last} at step {stop.saved}" in result.stdout + result.stderr
            assert not (resumed / "summary.json").exists()
            if stop.signal == "SIGUSR1":
                assert (tmp_path / "scontrol.calls").read_text().split() == ["requeue", "4242"]
                resume, env = [], {**env, "SLURM_RESTART_COUNT": "1"}  # a requeued job resumes by itself
            else:
                resume = ["ckpt_path=last"]
        assert checkpoint_facts(last).global_step == stop.saved, stop
    ok(train(resumed, *args, *resume, env=env))

    # every step's loss and every epoch's lr and val error as in the uninterrupted run: the first that differs
    # names the resume that went wrong
    for key in ("train/loss_step", "lr", "val/top1_err"):
        assert per_step(resumed, key) == per_step(straight, key), key
    lrs = [float(v) for v in per_step(straight, "lr").values()]
    assert lrs == [0.01, 0.01, 0.001], "the plateau schedule divides the lr after epoch 2 (no improvement)"

    a, b = load(straight / "checkpoints" / "last.ckpt"), load(resumed / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == STEPS_PER_EPOCH * EPOCHS and a["epoch"] == b["epoch"] == 2
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key
    states_a, states_b = a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"]
    assert states_a.keys() == states_b.keys() and states_a
    for key, state in states_a.items():  # the velocity (momentum) of every parameter
        assert state.keys() == states_b[key].keys() and all(torch.equal(v, states_b[key][n]) for n, v in state.items())
    assert a["lr_schedulers"] == b["lr_schedulers"]

    rows = csv_rows(resumed)
    logged = Counter((row["step"], key) for row in rows for key, value in row.items()
                     if value and key not in ("step", "epoch"))  # fmt: skip
    assert logged and max(logged.values()) == 1, "a metric was logged twice at one step"
    train_steps = sorted(int(row["step"]) for row in rows if row["train/loss_step"])
    assert train_steps == list(range(STEPS_PER_EPOCH * EPOCHS)), "each training step is in the resumed CSV once"
    if wandb:
        runs = sorted((resumed / "wandb").glob("offline-run-*"))
        assert len(runs) == len(stops) + 1 and len({run.name.rsplit("-", 1)[1] for run in runs}) == 1, runs


def test_kill_during_a_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        from alexnet_lab import resume
        io = resume.AtomicCheckpointIO()
        io.save_checkpoint({{"step": 1, "w": torch.arange(1000.0)}}, {str(path)!r})

        def killed_while_writing(obj, f, *args, **kwargs):  # the file AtomicCheckpointIO opened
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

    AtomicCheckpointIO().save_checkpoint({"step": 3}, path)
    assert load(path)["step"] == 3 and not list(tmp_path.glob(".last.ckpt.tmp-*"))


def test_a_checkpoint_is_synced_to_disk_file_then_folder_before_the_save_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AtomicCheckpointIO syncs the temp file before renaming it, then the folder that holds the new name, so that
    a power cut after the save keeps it (os.fsync recorded: the file or folder each call names)."""
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    assert synced == [str(tmp_path / f".last.ckpt.tmp-{socket.gethostname()}.{os.getpid()}"), str(tmp_path)]
    assert load(path)["step"] == 1
    atomic_write(tmp_path / "summary.json", lambda tmp: tmp.write_text("{}"))
    assert len(synced) == 2, "other files written whole are not synced: a sync costs milliseconds on a shared disk"
    with pytest.raises(TypeError) as error:
        AtomicCheckpointIO().save_checkpoint({"step": 2}, path, storage_options={"bucket": "b"})
    assert str(error.value) == "AtomicCheckpointIO takes no storage_options, got {'bucket': 'b'}"
    assert load(path)["step"] == 1


def test_the_configured_trainer_saves_every_checkpoint_through_a_temp_file(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer that conf/trainer/default.yaml builds writes each checkpoint to a temp file beside it and
    renames it (Lightning's own checkpoint IO writes the path itself)."""

    cfg = compose_cfg("experiment=smoke", "logger=csv", "trainer.max_steps=1", "trainer.enable_model_summary=false",
                      "trainer.enable_progress_bar=false")  # fmt: skip
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    trainer.fit(BoringModel())
    written: list[str] = []
    real_save = torch.save

    def spy(obj, f, *args, **kwargs):
        written.append(Path(getattr(f, "name", f)).name)  # a path, or the file it opened
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", spy)
    trainer.save_checkpoint(tmp_path / "epoch.ckpt")
    assert written == [f".epoch.ckpt.tmp-{socket.gethostname()}.{os.getpid()}"]
    assert load(tmp_path / "epoch.ckpt")["global_step"] == 1 and not list(tmp_path.glob(".epoch.ckpt.tmp-*"))


@pytest.mark.slow(20)
@pytest.mark.parametrize("rank", [1, 0])
def test_a_killed_rank_ends_the_job_naming_it(tmp_path: Path, rank: int) -> None:
    # A hang would raise TimeoutExpired: the whole run, start-up included, gets 180 s, where a healthy smoke
    # run takes about 20 s (the watchdogs poll every 0.2 s). The output pipes close only when every rank has
    # exited, so a rank left waiting in a collective would hang the test too.
    result = train(tmp_path / "run", "gpus=2", "logger=csv", *fault(step=2, rank=rank), timeout=180)
    if rank == 1:  # README: the job ends with status 1, naming the rank and the signal
        assert result.returncode == 1, result.stderr[-3000:]
        assert "error: DDP rank 1 (pid " in result.stderr and "was killed by SIGKILL" in result.stderr
    else:  # rank 0 is the process the user started: its status is the kill's, and rank 1 stops, saying why
        assert result.returncode == -9, result.stderr[-3000:]
        assert re.search(r"error: DDP rank 0 \(pid \d+\) died; rank 1 stops", result.stderr), result.stderr[-3000:]
    assert "Traceback" not in result.stderr, "one line, not the collective's connection error"


class Exited(Exception):
    """What os._exit raises here, so that a watchdog's exit can be seen in this process."""


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> None:
    def exit_(status: int) -> None:
        raise Exited(status)

    monkeypatch.setattr(os, "_exit", exit_)


@pytest.fixture
def ranks() -> Iterator[Callable[..., list[subprocess.Popen]]]:
    """Starts Python processes that stand for ranks; after the test, passed or failed, ends and reaps them."""
    started: list[subprocess.Popen] = []

    def start(*codes: str) -> list[subprocess.Popen]:
        started.extend(subprocess.Popen([sys.executable, "-c", code]) for code in codes)
        return started[-len(codes) :]

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


SLEEPS = "import time; time.sleep(60)"


def soon(condition: Callable[[], object], within_s: float = 10.0) -> bool:
    """Whether ``condition`` holds within the time (a thread's first step is not instant)."""
    deadline = time.monotonic() + within_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return bool(condition())


@pytest.mark.usefixtures("exits")
@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("import sys; sys.exit(3)", "exited with status 3"),
        ("import os; os.kill(os.getpid(), 9)", "was killed by SIGKILL"),
    ],
    ids=["exited", "killed"],
)
def test_rank_0s_watchdog_names_the_first_dead_rank_ends_the_others_and_exits_1(
    code: str, says: str, ranks: Callable[..., list[subprocess.Popen]], capsys: pytest.CaptureFixture[str]
) -> None:
    """launch.watch_children, in this process: ranks 3, 4 and 5 (first_rank=3) of a job; rank 4 dies."""
    procs = ranks("pass", code, SLEEPS)
    with pytest.raises(Exited) as exited:
        launch.watch_children(procs, first_rank=3)
    assert exited.value.args == (1,)
    assert capsys.readouterr().err == f"error: DDP rank 4 (pid {procs[1].pid}) {says}; stopping the job\n"
    assert procs[2].wait(10) == -9  # the rank still running is killed


@pytest.mark.usefixtures("exits")
def test_rank_0s_watchdog_ends_quietly_when_every_rank_ends_well(
    ranks: Callable[..., list[subprocess.Popen]], capsys: pytest.CaptureFixture[str]
) -> None:
    launch.watch_children(ranks("pass", "import time; time.sleep(0.5)"), first_rank=1)
    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("exits")
def test_after_rank_0s_error_a_dead_rank_is_named_within_the_wait_or_nothing_is_said(
    ranks: Callable[..., list[subprocess.Popen]], capsys: pytest.CaptureFixture[str]
) -> None:
    """launch.watch_children after an error (wait_s): a rank that dies during the wait is named; ranks that live
    on are not."""
    late = ranks("import time, sys; time.sleep(0.5); sys.exit(2)", SLEEPS)
    with pytest.raises(Exited):
        launch.watch_children(late, first_rank=1, wait_s=30)
    assert capsys.readouterr().err == f"error: DDP rank 1 (pid {late[0].pid}) exited with status 2; stopping the job\n"
    alive = ranks(SLEEPS)
    launch.watch_children(alive, first_rank=1, wait_s=0.5)  # returns: the error was rank 0's own
    assert alive[0].poll() is None and capsys.readouterr().err == ""
    launch.watch_children([], first_rank=1, wait_s=5)  # one process: nothing to wait for (a 5 s wait would hang here)


@pytest.mark.usefixtures("exits")
def test_a_child_ranks_watchdog_waits_on_rank_0_and_names_it_when_it_is_gone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """launch.watch_parent, without and with wait_s: rank 0 is the parent process. This process's parent
    lives, so they wait; a rank 0 that is not the parent any more (another pid here) has died."""
    watching = threading.Thread(target=launch.watch_parent, args=(os.getppid(), 2), daemon=True)
    watching.start()
    launch.watch_parent(os.getppid(), 2, wait_s=0.5)  # returns: rank 0 lives
    assert watching.is_alive() and capsys.readouterr().err == ""
    gone = os.getpid()
    for stop in (lambda: launch.watch_parent(gone, 2), lambda: launch.watch_parent(gone, 2, wait_s=30)):
        with pytest.raises(Exited) as exited:
            stop()
        assert exited.value.args == (1,)
        assert capsys.readouterr().err == f"error: DDP rank 0 (pid {gone}) died; rank 2 stops\n"


@pytest.mark.usefixtures("exits")
def test_the_ddp_strategy_watches_the_ranks_it_starts_and_after_an_error_names_a_dead_one(
    ranks: Callable[..., list[subprocess.Popen]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SweepSafeDDPStrategy's hooks, in process, on node 1 of two nodes of two processes each. Rank 2 (node 1's
    rank 0) starts global rank 3, tells it its pid, and watches it from a daemon thread (one that cannot keep a
    finished job alive); after an error of its own it names the rank that died. Rank 3 watches rank 2, and after
    an error of its own names a rank 2 that is gone. A KeyboardInterrupt is the user's: nothing is explained."""
    watched: list[tuple[str, bool, tuple]] = []

    def recorder(name: str) -> Callable[..., None]:
        def record(*args: object) -> None:
            watched.append((threading.current_thread().name, threading.current_thread().daemon, args))

        record.__name__ = name
        return record

    watchdogs = launch.watch_children, launch.watch_parent  # after an error, the strategy waits with them
    monkeypatch.setattr(launch, "watch_children", recorder("watch_children"))
    monkeypatch.setattr(launch, "watch_parent", recorder("watch_parent"))
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.delenv("ALEXNET_LAB_RANK0_PID", raising=False)  # starting_ranks sets it: put back after the test
    monkeypatch.setattr(launch, "_children", [])  # the job's ranks (job_scope empties it; there is none here)
    environment = LightningEnvironment()

    def strategy() -> launch.SweepSafeDDPStrategy:  # this node's two processes
        return launch.SweepSafeDDPStrategy(cluster_environment=environment, parallel_devices=[torch.device("cpu")] * 2)

    rank0 = strategy()
    rank0.starting_ranks()
    assert os.environ["ALEXNET_LAB_RANK0_PID"] == str(os.getpid())  # the environment the ranks are started with
    dead = ranks("import sys; sys.exit(4)")
    rank0.ranks_started(dead)
    dead[0].wait(30)
    assert soon(lambda: watched)
    assert watched == [("watch_children", True, (dead, 3))]
    monkeypatch.setattr(launch, "watch_children", watchdogs[0])
    rank0.on_exception(KeyboardInterrupt())
    assert capsys.readouterr().err == ""
    with pytest.raises(Exited):
        rank0.on_exception(RuntimeError("gloo: connection closed by peer"))
    assert capsys.readouterr().err == f"error: DDP rank 3 (pid {dead[0].pid}) exited with status 4; stopping the job\n"

    monkeypatch.setattr(DDPStrategy, "setup_environment", lambda self: None)  # the process group: not here
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("ALEXNET_LAB_RANK0_PID", str(os.getppid()))  # this process stands for rank 3
    monkeypatch.setattr(environment, "global_rank", lambda: 3)  # set_global_rank would set rank_zero_only.rank
    watched.clear()
    child = strategy()
    child.setup_environment()
    assert soon(lambda: watched)
    assert watched == [("watch_parent", True, (os.getppid(), 3))]
    monkeypatch.setattr(launch, "watch_parent", watchdogs[1])
    child._rank0_pid = gone = os.getpid()  # as if rank 2 had died: it is no longer the parent
    with pytest.raises(Exited):
        child.on_exception(RuntimeError("gloo: connection closed by peer"))
    assert capsys.readouterr().err == f"error: DDP rank 0 (pid {gone}) died; rank 3 stops\n"
    monkeypatch.setenv("ALEXNET_LAB_RANK0_PID", str(os.getpid()))  # a rank 0 that is not the parent: not ours
    watched.clear()
    strategy().setup_environment()
    assert not soon(lambda: watched, within_s=0.5)


@pytest.mark.usefixtures("exits")
def test_after_its_own_error_a_rank_whose_peers_live_stops_looking_after_the_wait(
    ranks: Callable[..., list[subprocess.Popen]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error that is the rank's own (its peers and its parent alive): the strategy's on_exception waits
    ``launch.ERROR_WAIT_S`` for a dead peer to name, then returns, naming nothing, so that the error is raised;
    an unbounded wait would hang the job for as long as the peers live."""
    monkeypatch.setattr(launch, "ERROR_WAIT_S", 0.3)
    monkeypatch.setattr(launch, "_children", ranks(SLEEPS))  # rank 0's child, alive for the whole test
    monkeypatch.delenv("ALEXNET_LAB_RANK0_PID", raising=False)
    strategy = launch.SweepSafeDDPStrategy(cluster_environment=LightningEnvironment(),
                                           parallel_devices=[torch.device("cpu")] * 2)  # fmt: skip
    strategy.on_exception(RuntimeError("rank 0's own error"))  # returns: it raised no Exited
    strategy._rank0_pid = os.getppid()  # now as the child rank: its parent is alive
    strategy.on_exception(RuntimeError("the child's own error"))
    assert capsys.readouterr().err == ""
    assert all(proc.poll() is None for proc in launch._children), "the live rank is left to the job's end"


def test_a_started_rank_runs_the_current_job_alone_in_its_run_dir(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """launch.job_command, for one job of `python src/train.py -m pooling=overlap,nonoverlap seed=3
    --config-dir=mine`: the job's own overrides, the extra config dir, its run dir, no -m, from where the user
    started it."""
    cfg = compose_cfg("pooling=nonoverlap", "seed=3")
    with read_write(cfg.hydra.runtime.config_sources):
        cfg.hydra.runtime.config_sources.append(ConfigSourceInfo("mine", "file", "command-line"))
    HydraConfig.instance().set_config(cfg)
    monkeypatch.setattr(sys, "argv", ["src/train.py", "-m", "pooling=overlap,nonoverlap", "seed=3"])
    with launch.job_scope("src/train.py"):
        command, cwd = launch.job_command()
    assert command == [sys.executable, str(Path("src/train.py").resolve()), "--config-dir=mine",
                       "--config-name=train", "pooling=nonoverlap", "seed=3",
                       f'hydra.run.dir="{tmp_path / "run"}"', "hydra.job.chdir=False"]  # fmt: skip
    assert cwd == os.getcwd()
    says = "a job of several processes starts its ranks inside alexnet_lab.launch.job_scope(__file__): run the "
    with pytest.raises(UserError, match=f"^{re.escape(says)}script's job in it, as src/train.py does$"):
        launch.job_command()  # a script of the user's own that did not start the job in job_scope


def test_the_divergence_line_names_the_step_and_the_checkpoint_to_resume_from_or_its_absence() -> None:
    assert str(Diverged(8, "/runs/a/checkpoints/last.ckpt")) == (
        "training diverged: the loss was not finite at step 8; the last checkpoint before it is "
        "/runs/a/checkpoints/last.ckpt: resume from it with a lower model.lr, or start again"
    )
    assert str(Diverged(3, None)) == (
        "training diverged: the loss was not finite at step 3; no checkpoint was written before it: start again "
        "with a lower model.lr"
    )


def test_checkpoint_of_another_configuration_names_the_mismatch(tmp_path: Path) -> None:
    first = tmp_path / "first"
    ok(run_in_process("train.py", *RUN, "logger=csv", "trainer.max_epochs=1", f"hydra.run.dir={first}", cwd=tmp_path))
    result = run_in_process("train.py", *RUN, "logger=csv", "pooling=nonoverlap", "model.net.widths=[16,32,32,32,16]",
                            f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}", f"hydra.run.dir={tmp_path / 'second'}",
                            cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "pooling: checkpoint 'overlap' vs this run 'nonoverlap'" in errors[0]
    assert "widths: checkpoint [16, 32, 32, 32, 32] vs this run [16, 32, 32, 32, 16]" in errors[0]


def bytes_read() -> int:
    """What this process has read through read() so far (Linux: /proc/self/io's rchar)."""
    return int(re.search(r"rchar: (\d+)", Path("/proc/self/io").read_text())[1])  # type: ignore[index]


def test_a_checkpoints_step_epoch_and_wandb_id_are_read_without_its_tensors_on_any_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What train.py and figures.py read of a checkpoint before anything else: 32 MB of weights are not read,
    and a checkpoint written on a GPU is read on a host without one (its tensors are tagged as CUDA ones here)."""
    path = tmp_path / "last.ckpt"
    weights = {"conv1.weight": torch.zeros(2**23)}
    with monkeypatch.context() as written_on_a_gpu:
        written_on_a_gpu.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save({"state_dict": weights, "hyper_parameters": {"net": {}}, "global_step": 12, "epoch": 3,
                    "wandb_run_id": "abc123"}, path)  # fmt: skip
    before = bytes_read()
    facts = checkpoint_facts(path)
    assert bytes_read() - before < 1_000_000 < path.stat().st_size // 32
    assert (facts.global_step, facts.epoch, facts.wandb_run_id) == (12, 3, "abc123")
    torch.save({"state_dict": {}, "hyper_parameters": {"net": {}}, "global_step": 4}, path)
    assert (checkpoint_facts(path).epoch, checkpoint_facts(path).wandb_run_id) == (0, None)


def test_a_file_that_is_not_one_of_our_checkpoints_is_named_with_what_it_lacks(tmp_path: Path) -> None:
    """Text, a pickle of objects that are not tensors (torch.load reads weights only: it runs no code of the
    file), a dict of other keys, a list, hyper-parameters without the net: each refused with the whole line."""
    give = "give a .ckpt file from a run's checkpoints/ folder"
    cases = {
        "text": None,
        "objects": {"state_dict": {}, "hyper_parameters": {"net": {}}, "global_step": Fraction(1, 3)},
        "other": {"weights": torch.zeros(3)},
        "list": [torch.zeros(3)],
        "no-net": {"state_dict": {}, "hyper_parameters": {"lr": 0.01}, "global_step": 1},
        "no-hparams": {"state_dict": {}, "hyper_parameters": None, "global_step": 1},
    }
    lacks = "state_dict, hyper_parameters, global_step"
    expected = {
        "text": f"is not a checkpoint (torch.load cannot read it): {give}",
        "objects": f"is not a checkpoint (torch.load cannot read it): {give}",
        "other": f"is not a checkpoint written by src/train.py (it has no {lacks}): {give}",
        "list": f"is not a checkpoint written by src/train.py (it has no {lacks}): {give}",
        "no-net": f"is not a checkpoint written by src/train.py (it has no hyper_parameters.net): {give}",
        "no-hparams": f"is not a checkpoint written by src/train.py (it has no hyper_parameters.net): {give}",
    }
    for kind, content in cases.items():
        path = tmp_path / f"{kind}.ckpt"
        if content is None:
            path.write_text("not a checkpoint\n")
        else:
            torch.save(content, path)
        with pytest.raises(UserError) as error:
            checkpoint_facts(path)
        assert str(error.value) == f"ckpt_path={path} {expected[kind]}", kind


def test_a_resumed_run_continues_its_metrics_csv_and_its_wandb_run_under_the_jobs_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resume.make_loggers, given conf/logger/default.yaml's nodes (and a null one, left out): resumed from a
    checkpoint of step 8, metrics.csv keeps the rows logged before step 8 and W&B is asked to continue the
    checkpoint's run, under the job's group, name, job type, tags and config; a fresh run starts both anew."""
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: started.append(kwargs) or SimpleNamespace())
    monkeypatch.setenv("WANDB_MODE", "offline")  # Lightning's offline switch sets it
    identity = {"group": "sweep", "name": "lr=0.1,seed=1", "job_type": "lr=0.1", "tags": ["norm=lrn"],
                "config": {"lr": 0.1}}  # fmt: skip
    nodes = OmegaConf.create({
        "off": None,
        "wandb": {"_target_": "lightning.pytorch.loggers.WandbLogger", "project": "alexnet-lab",
                  "save_dir": str(tmp_path), "mode": "offline"},
        "csv": {"_target_": "alexnet_lab.resume.ResumableCSVLogger", "save_dir": str(tmp_path / "csv"), "name": "",
                "version": ""},
    })  # fmt: skip
    metrics = tmp_path / "csv" / "metrics.csv"

    def logged_steps() -> list[int]:
        with open(metrics, newline="") as f:
            return [int(row["step"]) for row in csv.DictReader(f)]

    for resumed, steps, wandb_run in ((CheckpointFacts(8, 1, "run42"), [*range(8), 8], {"id": "run42"}),
                                      (None, [0], {"id": None})):  # fmt: skip
        metrics.parent.mkdir(exist_ok=True)
        metrics.write_text("epoch,step,train/loss\n" + "".join(f"{s // 4},{s},0.5\n" for s in range(12)))
        wandb_logger, csv_logger = make_loggers(nodes, resumed, identity)
        csv_logger.log_metrics({"train/loss": 0.25}, step=steps[-1])
        csv_logger.save()
        assert logged_steps() == steps
        assert wandb_logger.experiment is not None and len(started) == 1
        asked = started.pop()
        assert {key: asked.get(key) for key in ("id", "resume", *identity)} == {**wandb_run, "resume": "allow",
                                                                                 **identity}  # fmt: skip
        assert set(asked) <= {"entity", "project", "name", "dir", "id", "resume", "mode", *identity}, "no anonymous"
    # Lightning's CSVLogger's own arguments, given by position
    assert Path(ResumableCSVLogger(str(tmp_path / "csv"), "", "", resume_step=8).log_dir) == tmp_path / "csv"


@pytest.mark.parametrize(
    ("argument", "says"),
    [
        ({"colour": "red"}, "CSVLogger.__init__() got an unexpected keyword argument 'colour'"),
        # a node inside that Hydra cannot make: its cause, not Hydra's three lines around it
        (
            {"save_dir": {"_target_": "builtins.int", "_args_": ["seven"]}},
            "invalid literal for int() with base 10: 'seven'",
        ),
    ],
    ids=["argument", "inner-node"],
)
def test_a_logger_that_cannot_be_made_is_one_line_naming_it_and_the_cause(argument: dict, says: str) -> None:
    nodes = OmegaConf.create({"csv": None, "mine": {"_target_": "lightning.pytorch.loggers.CSVLogger", "save_dir": ".",
                                                    **argument}})  # fmt: skip
    with pytest.raises(UserError) as error:
        make_loggers(nodes, None, {})
    assert str(error.value) == f"logger.mine could not be made: {says}"


class LinearSteps(L.LightningModule):
    """A module of one linear layer whose every step trains (or validates) on a batch of two 2-vectors."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        return self.layer(batch).sum()

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.layer(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class FiniteUntilStep4(LinearSteps):
    def finite(self) -> bool:  # as ClassifierModule.finite: whether every training loss so far was finite
        return self.trainer.global_step <= 4


@pytest.mark.parametrize("validate", [False, True], ids=["no-validation", "validation"])
@pytest.mark.parametrize(("module", "steps", "epochs"),
                         [(LinearSteps, [2, 4, 8], [0, 1, 2]), (FiniteUntilStep4, [2, 4], [0])])  # fmt: skip
def test_checkpoints_skip_an_epochs_last_step_and_anything_after_a_loss_that_was_not_finite(
    tmp_path: Path, module: type[LinearSteps], steps: list[int], epochs: list[int], validate: bool
) -> None:
    """conf/callbacks/default.yaml's step checkpoint (every 2 steps here) and epoch checkpoint, over 3 epochs of
    3 steps: steps 2, 4, 6 and 8 are due, but step 6 is an epoch's last (its epoch-end checkpoint follows); a
    module that says its loss was not finite from step 5 on gets none after it (epoch 0's, at step 3, stays), one
    that does not say is taken as finite."""
    by_step = SafeCheckpoint(dirpath=tmp_path, filename="{step}", monitor=None, save_top_k=-1, every_n_train_steps=2)
    by_epoch = SafeCheckpoint(dirpath=tmp_path, filename="{epoch}", monitor=None, save_top_k=-1, every_n_epochs=1)
    # validating every 3 steps (each epoch's end here), Lightning writes the epoch's checkpoint after the
    # validation; validating once an epoch (val_check_interval=1.0), at the epoch's end, as without validation
    validation = {"limit_val_batches": 1, "val_check_interval": 3} if validate else {"limit_val_batches": 0}
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, callbacks=[by_step, by_epoch], **validation,
                        num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    batches = DataLoader([torch.randn(2, 2) for _ in range(3)], batch_size=None)
    trainer.fit(module(), batches, batches)
    assert trainer.global_step == 9
    for name, numbers in (("step", steps), ("epoch", epochs)):
        assert sorted(int(path.stem.removeprefix(f"{name}=")) for path in tmp_path.glob(f"{name}=*.ckpt")) == numbers


def fit_three_epochs(module: L.LightningModule, *callbacks: L.Callback) -> tuple[L.Trainer, int | None]:
    """3 epochs of 3 steps; the trainer, and the exit status if the fit exited."""
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, limit_val_batches=0, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=list(callbacks))  # fmt: skip
    try:
        trainer.fit(module, DataLoader([torch.randn(2, 2) for _ in range(3)], batch_size=None))
    except SystemExit as exited:
        return trainer, exited.code  # type: ignore[return-value]
    return trainer, None


@pytest.mark.parametrize(
    ("module", "sig", "at", "saved"),
    [
        (LinearSteps, signal.SIGUSR1, 2, 2),
        (LinearSteps, signal.SIGTERM, 4, 4),
        (LinearSteps, signal.SIGUSR2, 3, 3),  # in an epoch's last step: saved at the epoch's end
        (FiniteUntilStep4, signal.SIGUSR1, 5, None),  # after a loss that was not finite
    ],
    ids=["requeue", "stop", "at-an-epochs-end", "not-finite"],
)
def test_a_signal_in_a_fit_saves_at_the_steps_end_stops_before_the_next_and_requeues_a_slurm_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, default_signals: None,
    module: type[LinearSteps], sig: signal.Signals, at: int, saved: int | None,
) -> None:  # fmt: skip
    """Preemption in a fit of 3 epochs of 3 steps, in a SLURM job (a stand-in scontrol): the signal's step is
    saved to last.ckpt (one in an epoch's last step at the epoch's end), the run exits 0 before the next step, and
    a requeue signal (not SIGTERM) puts the job back in the queue; the signal reaches the ranks the fit started
    (a stand-in rank: one process here). After a loss that was not finite, the signal
    does nothing: the module's divergence check ends the run (not this module's: it trains on)."""
    in_slurm_job(tmp_path, monkeypatch)
    caplog.set_level(logging.INFO)
    forwarded: list[int] = []  # what reaches the ranks that the fit's launcher started (DDP)
    rank = SimpleNamespace(send_signal=forwarded.append)
    monkeypatch.setattr(compat, "started_ranks", lambda trainer: [rank] if isinstance(trainer, L.Trainer) else [])
    last = tmp_path / "checkpoints" / "last.ckpt"
    trainer, exit_code = fit_three_epochs(
        module(), SignalAtStep(step=at, signal=sig.name), Preemption(str(last.parent))
    )
    said = f"{sig.name} received: saved {last} at step {saved}; resume with ckpt_path=last"
    assert forwarded == [sig]
    expected = (0, saved, True) if saved else (None, 9, False)  # exit status, the last step, the line
    assert (exit_code, trainer.global_step, said in caplog.messages) == expected
    assert (torch.load(last)["global_step"] if last.exists() else None) == saved
    requeued = sig != signal.SIGTERM and saved is not None
    calls = tmp_path / "scontrol.calls"
    assert (calls.read_text().split() if calls.exists() else []) == (["requeue", "4242"] if requeued else [])
    assert ("scontrol requeue 4242: done" in caplog.messages) == requeued


class OtherRankSignalledAt(L.Callback):
    """A second rank, as the strategy's agreement sees it: from ``step`` on, that rank has received a signal (this
    process receives none). Lightning's reduce_boolean_decision over the two: all, or any with ``all=False``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        def both(decision: bool, all: bool = True) -> bool:
            other = trainer.global_step >= self.step
            return (decision and other) if all else (decision or other)

        trainer.strategy.reduce_boolean_decision = both  # type: ignore[method-assign]


def test_a_rank_that_received_no_signal_saves_at_the_same_step_and_leaves_the_requeue_to_the_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, default_signals: None
) -> None:
    in_slurm_job(tmp_path, monkeypatch)
    caplog.set_level(logging.INFO)
    last = tmp_path / "checkpoints" / "last.ckpt"
    trainer, exit_code = fit_three_epochs(LinearSteps(), OtherRankSignalledAt(step=2), Preemption(str(last.parent)))
    assert (exit_code, trainer.global_step, torch.load(last)["global_step"]) == (0, 2, 2)
    assert f"a signal (on another rank) received: saved {last} at step 2; resume with ckpt_path=last" in caplog.messages
    assert not (tmp_path / "scontrol.calls").exists()


def test_a_requeue_that_scontrol_refuses_is_said_with_its_status_and_the_run_still_ends_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, default_signals: None
) -> None:
    in_slurm_job(tmp_path, monkeypatch, scontrol_status=3)
    caplog.set_level(logging.INFO)
    last = tmp_path / "checkpoints" / "last.ckpt"
    trainer, exit_code = fit_three_epochs(
        LinearSteps(), SignalAtStep(step=2, signal="SIGUSR1"), Preemption(str(last.parent))
    )
    assert (exit_code, torch.load(last)["global_step"]) == (0, 2)
    assert (tmp_path / "scontrol.calls").read_text().split() == ["requeue", "4242"]
    assert "scontrol requeue 4242: failed with status 3" in caplog.messages


def test_after_training_a_time_limit_warning_no_longer_kills_but_sigterm_still_stops(
    tmp_path: Path, default_signals: None
) -> None:
    """A --signal=USR1@N warning that comes during the final validation or the figures found the signal's default
    action (terminate) and failed the job; after fit it is ignored, and SIGTERM keeps the handler it had."""
    preemption = Preemption(str(tmp_path))
    assert signal.getsignal(signal.SIGUSR1) == preemption._handle  # during training: ours
    preemption.teardown(None, None, "fit")  # type: ignore[arg-type]
    assert signal.getsignal(signal.SIGUSR1) == signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_unknown_signal_names_are_refused_in_one_line_before_any_handler_changes(
    tmp_path: Path, default_signals: None
) -> None:
    with pytest.raises(UserError) as error:
        Preemption(str(tmp_path), stop_signals=["SIGTERM", "SIGNOPE"], requeue_signals=["USR1", "SIGUSR2"])
    assert str(error.value) == "callbacks.preemption: unknown signal(s) ['SIGNOPE', 'USR1']: use names like SIGTERM"
    assert [signal.getsignal(s) for s in PREEMPTION_SIGNALS] == [signal.SIG_DFL] * 3


def test_a_signal_before_training_starts_is_kept_for_the_first_step(tmp_path: Path, default_signals: None) -> None:
    """The handlers are installed when the callback is made, before the data are set up: a signal then is noted
    (there are no ranks to pass it on to yet), and the first step's end acts on it."""
    preemption = Preemption(str(tmp_path))
    os.kill(os.getpid(), signal.SIGUSR1)
    time.sleep(0.1)  # Python runs the handler between two bytecodes of this thread
    assert preemption.first == signal.SIGUSR1


def test_the_first_signal_decides_and_reaches_the_ranks_this_process_started(
    tmp_path: Path, default_signals: None
) -> None:
    """Preemption's handler: the first signal is the one acted on, and it is passed on to the rank processes this
    one started (Lightning's launcher's), those that have ended skipped; a later signal changes nothing and is
    not passed on."""
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    launcher = compat.SubprocessScriptLauncher(LightningEnvironment(), num_processes=2, num_nodes=1)
    ended = subprocess.Popen([sys.executable, "-c", ""])
    ended.wait()
    launcher.procs = [ended, subprocess.Popen(sleeper)]
    try:
        preemption = Preemption(str(tmp_path))
        preemption._trainer = SimpleNamespace(strategy=SimpleNamespace(launcher=launcher))  # type: ignore[assignment]
        preemption._handle(signal.SIGUSR1, None)
        assert preemption.first == signal.SIGUSR1 and launcher.procs[1].wait(10) == -signal.SIGUSR1
        launcher.procs = [subprocess.Popen(sleeper)]
        preemption._handle(signal.SIGTERM, None)
        time.sleep(1)  # a signal passed on would have ended it by now
        assert preemption.first == signal.SIGUSR1 and launcher.procs[0].poll() is None
    finally:
        for proc in launcher.procs:
            proc.kill()


# -- a loss that is not finite, a full disk ------------------------------------------------------------------------
# model.lr=1000 sends the smoke net's loss to nan in its second epoch (step 7 of 8, on this data and seed); the
# first epoch's checkpoints, at step 4, are finite. Logging every 2 steps: the run stops at the interval after.
DIVERGES = ["model.lr=1000", "trainer.log_every_n_steps=2", "callbacks.step_checkpoint.every_n_train_steps=100"]


def nonfinite_steps(run_dir: Path) -> list[int]:
    """The steps whose logged interval loss is not finite (from metrics.csv)."""
    return [int(r["step"]) for r in csv_rows(run_dir) if r.get("train/loss_step") and not math.isfinite(float(
        r["train/loss_step"]))]  # fmt: skip


@pytest.mark.slow(30)
@pytest.mark.parametrize("processes", [1, 2])
def test_a_loss_that_is_not_finite_stops_the_run_naming_the_step_and_the_last_finite_checkpoint(
    tmp_path: Path, processes: int
) -> None:
    """Alone and with DDP, with two loader workers, where every rank stops at the same step: one error line, exit
    status 2, the step in summary.json, no checkpoint written after that step (the last one loads, with finite
    weights), and no validation of the diverged weights (found at the epoch's last step, before its validation)."""
    run_dir = tmp_path / "run"
    gpus = ["gpus=2"] if processes == 2 else []
    result = train(run_dir, *DIVERGES, "logger=csv", "trainer.max_epochs=4", "data.num_workers=2", *gpus)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    summary = json.loads((run_dir / "summary.json").read_text())
    step = summary["diverged_at_step"]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert result.returncode == 2 and errors == [
        f"error: training diverged: the loss was not finite at step {step}; the last checkpoint before it is "
        f"{last}: resume from it with a lower model.lr, or start again"], result.stderr[-3000:]  # fmt: skip
    assert summary["last_finite_ckpt"] == str(last) and 4 < step <= 8, summary
    saved = load(last)
    assert saved["global_step"] < step and all(torch.isfinite(t).all() for t in saved["state_dict"].values())
    trained = [int(r["step"]) for r in csv_rows(run_dir) if r.get("train/loss_step")]
    assert max(trained) < step + 2, "the run stopped at the logging interval after the step"
    validated = [int(r["step"]) for r in csv_rows(run_dir) if r.get("val/top1_err")]
    assert validated and max(validated) < step, f"validated at steps {validated}, diverged at {step}"
    if processes == 2:
        assert "rank 1" not in result.stderr and "killed" not in result.stderr, "the ranks stopped together"


@pytest.mark.slow(40)
def test_in_a_sweep_a_job_that_diverges_is_marked_and_the_others_go_on(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_script("train.py", "-m", *RUN, *DIVERGES[1:], "logger=csv", "model.lr=0.01,1000",
                        f"hydra.sweep.dir={sweep}", cwd=tmp_path)  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and len(errors) == 2, result.stderr[-3000:]
    assert errors[0].startswith("error: training diverged: the loss was not finite at step ")
    assert errors[1] == f"error: job(s) 1 of the sweep diverged (see {sweep / 'report.md'})"
    report = (sweep / "report.md").read_text()
    rows = [line for line in report.splitlines() if re.match(r"\| \d \|", line)]
    assert len(rows) == 2 and "diverged at step" not in rows[0] and rows[1].count("diverged at step") == 4
    assert json.loads((sweep / "0" / "summary.json").read_text())["val/top1_err"] <= 1


@pytest.mark.slow(40)
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs, which needs root (CI runs as root)")
def test_a_full_disk_ends_the_run_with_one_line_and_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    """On a real 24 MiB tmpfs: an epoch trains and saves, then the disk is filled but 300 KB (a checkpoint is
    about 900 KB) and the run resumed: its next save fails with one line naming the file and the cause, exit
    status 2, the previous last.ckpt whole and loadable, and no temp file left."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], check=True)
    try:
        run_dir = disk / "run"
        ok(train(run_dir, "logger=csv", "trainer.max_epochs=1"))
        last = run_dir / "checkpoints" / "last.ckpt"
        before = last.read_bytes()
        stats = os.statvfs(disk)
        (disk / "filler").write_bytes(bytes(stats.f_bavail * stats.f_frsize - 300_000))
        result = train(run_dir, "logger=csv", "trainer.max_epochs=2", "ckpt_path=last")
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
        assert re.fullmatch(rf"error: cannot write {run_dir}/checkpoints/\S+\.ckpt: No space left on device: free "
                            r"space there \(or raise the quota\), or set paths.log_dir", errors[0]), errors  # fmt: skip
        assert "Traceback" not in result.stderr
        assert last.read_bytes() == before and load(last)["global_step"] == 4
        assert not list((run_dir / "checkpoints").glob(".*.tmp-*")), "no temp file left"
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_under_slurm_lightnings_requeue_handler_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trainer's plugins: atomic checkpoint files; in a SLURM job, Lightning's SLURM environment (which it
    would pick by itself) with auto_requeue off, so that its handler never acts on SIGUSR1 (in validate() too)."""

    for name in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    assert [type(p) for p in trainer_plugins()] == [AtomicCheckpointIO]
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train.sbatch")
    io, environment = trainer_plugins()
    assert isinstance(io, AtomicCheckpointIO) and isinstance(environment, SLURMEnvironment)
    assert environment.auto_requeue is False


class FakeRank:
    """A started rank on a fake clock: it ends once waited on for ``ends_after`` seconds, else the wait times out
    (the clock moves on by what was waited either way)."""

    def __init__(self, clock: list[float], ends_after: float) -> None:
        self.clock, self.ends_after, self.waits, self.killed = clock, ends_after, [], False

    def wait(self, timeout: float | None = None) -> int:
        self.waits.append(timeout)
        if self.killed or timeout is None or timeout >= self.ends_after:
            self.clock[0] += 0 if self.killed else self.ends_after
            return 0
        self.clock[0] += timeout
        raise subprocess.TimeoutExpired("rank", timeout)

    def kill(self) -> None:
        self.killed = True


@pytest.mark.parametrize(("failed", "wait_s"), [(False, 120.0), (True, 10.0)], ids=["ended-well", "failed"])
def test_a_job_waits_for_its_ranks_then_kills_and_reaps_those_still_there(
    monkeypatch: pytest.MonkeyPatch, failed: bool, wait_s: float
) -> None:
    """The end of launch.job_scope: the ranks it started get 120 s in all to finish with rank 0 after a job that
    ended well, 10 s after one that failed (Lightning has sent them SIGKILL already); a rank still there at the
    end of the wait is killed and reaped. Three ranks, ending 3 s, never and 1 s after the job (at 3 s the second
    uses up what is left of the wait, and the third, waited on for the 0 s left, is killed)."""
    clock = [1000.0]
    monkeypatch.setattr(launch.time, "monotonic", lambda: clock[0])
    ranks = [FakeRank(clock, 3.0), FakeRank(clock, math.inf), FakeRank(clock, 1.0)]

    def job() -> None:
        with launch.job_scope(__file__):
            launch._children.extend(ranks)  # type: ignore[arg-type]  # as ranks_started records them
            if failed:
                raise RuntimeError("the job's own error")

    if failed:
        with pytest.raises(RuntimeError, match="the job's own error"):
            job()
    else:
        job()
    assert [(rank.waits, rank.killed) for rank in ranks] == [
        ([wait_s], False), ([wait_s - 3.0, None], True), ([0.0, None], True)]  # fmt: skip
    assert launch._children == []


def test_several_processes_get_the_sweep_safe_ddp_strategy_and_one_gets_lightnings_choice() -> None:
    """conf/trainer/default.yaml's strategy, from gpus (devices) and trainer.num_nodes."""
    assert launch.strategy_for(1, 1) == "auto"
    for devices, num_nodes in ((2, 1), (1, 2), (4, 2)):
        assert isinstance(launch.strategy_for(devices, num_nodes), launch.SweepSafeDDPStrategy)


def skip_bad_run(tmp_path: Path, processes: int, train_per_class: int, bad: int) -> Path:
    """A run of two epochs, one image per process and step, on four classes of which the first ``bad`` training
    images (in wnid order) are unreadable, with data.skip_bad_images: its run dir, once it has ended well."""
    root = write_layout(tmp_path / "data", num_classes=4, train_per_class=train_per_class, val_per_class=4)
    for path in sorted((root / "train").glob("*/*.JPEG"))[:bad]:
        path.write_bytes(b"not a JPEG")
    run_dir = tmp_path / "run"
    data = ["data=imagenet", f"data.root={root}", "data.skip_bad_images=true", f"data.batch_size={processes}"]
    gpus = ["gpus=2"] if processes == 2 else []
    # a rank left out of a collective hangs: fail after 5 minutes, not 10
    ok(train(run_dir, *data, "data.num_workers=2", "logger=csv", *gpus, timeout=300))
    return run_dir


@pytest.mark.slow(40)
@pytest.mark.parametrize("processes", [1, 2])
def test_a_batch_that_lost_every_image_is_passed_over_alone_and_with_ddp(tmp_path: Path, processes: int) -> None:
    """data.skip_bad_images with half the training images unreadable (every image of two of the four classes),
    one image per process and step: each rank meets steps whose batch lost its image while the other rank's did
    not. The run trains to its end (Lightning refuses a step skipped on one rank only; a rank whose batch is empty
    adds zero gradients), every step counted, each epoch's training loss finite (the readable images'). The
    statistics for the PCA lighting are computed over the readable images first."""
    run_dir = skip_bad_run(tmp_path, processes, train_per_class=8, bad=16)  # the first two classes' images
    rows = csv_rows(run_dir)
    steps_per_epoch = 32 // processes  # drop_last: every step has one image per process, readable or not
    assert max(int(r["step"]) for r in rows if r.get("train/loss_step")) == 2 * steps_per_epoch - 1
    epochs = [r for r in rows if r.get("train/top1_err")]
    assert len(epochs) == 2 and all(math.isfinite(float(r["train/loss_epoch"])) for r in epochs)
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 2 * steps_per_epoch


@pytest.mark.slow(40)
@pytest.mark.parametrize("processes", [1, 2])
def test_an_epoch_with_one_readable_image_gives_its_figures_alone_and_with_ddp(tmp_path: Path, processes: int) -> None:
    """Four training images, three unreadable: under DDP one rank trains on the readable image and the other on
    none in the whole epoch; the epoch's figures, summed over the ranks, are that one image's (an error of 0 or 1)
    and the run ends (the rank with no image takes part in the sum)."""
    rows = csv_rows(skip_bad_run(tmp_path, processes, train_per_class=1, bad=3))
    epochs = [r for r in rows if r.get("train/top1_err")]
    assert len(epochs) == 2 and all(float(r["train/top1_err"]) in (0.0, 1.0) for r in epochs), epochs
    assert all(math.isfinite(float(r["train/loss_epoch"])) for r in epochs)
