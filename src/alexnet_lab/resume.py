"""What makes a run survive a kill, and a signal to stop: atomic checkpoint files, a checkpoint every N steps
(:class:`SafeCheckpoint`) and at a signal (:class:`Preemption`), the facts a resumed run needs from its
checkpoint, loggers that a resumed run continues instead of overwriting, and the choice of the checkpoint to
resume from (the same in every rank)."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from omegaconf import DictConfig, OmegaConf

from alexnet_lab import cluster, compat
from alexnet_lab.errors import UserError
from alexnet_lab.files import atomic_write

log = logging.getLogger(__name__)

WANDB_ID_KEY = "wandb_run_id"
CHECKPOINT_KEYS = ("state_dict", "hyper_parameters", "global_step")  # what every checkpoint of ours has


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temp file beside it, syncs it, then renames it over the old one.

    A rename within a directory is atomic on POSIX file systems, so a kill during a save leaves the previous
    checkpoint whole and readable; the half-written temp file is removed by the next save.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a Python file: a full disk raises its OSError, not torch's RuntimeError
                torch.save(checkpoint, f)

        atomic_write(path, write, fsync=True)


def trainer_plugins() -> list[Any]:
    """conf/trainer/default.yaml's plugins: atomic checkpoint files, and under SLURM (where Lightning would take
    its SLURM environment anyway) that environment without its requeue handler, which would act on SIGUSR1 in
    validate() and test(): :class:`Preemption` alone decides what SIGUSR1, SIGUSR2 and SIGTERM do."""
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


@dataclass(frozen=True)
class CheckpointFacts:
    global_step: int
    epoch: int
    wandb_run_id: str | None


def checkpoint_facts(path: str | Path) -> CheckpointFacts:
    """The step and W&B run id stored in a checkpoint, read without loading its tensors (mmap). A file that is
    not a checkpoint written by src/train.py raises a UserError naming it."""
    try:
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as error:
        raise UserError(
            f"ckpt_path={path} is not a checkpoint (torch.load cannot read it): give a .ckpt file "
            "from a run's checkpoints/ folder"
        ) from error
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
    if not missing and "net" not in (ckpt["hyper_parameters"] or {}):
        missing = ["hyper_parameters.net"]
    if missing:
        raise UserError(
            f"ckpt_path={path} is not a checkpoint written by src/train.py (it has no "
            f"{', '.join(missing)}): give a .ckpt file from a run's checkpoints/ folder"
        )
    return CheckpointFacts(int(ckpt["global_step"]), int(ckpt.get("epoch", 0)), ckpt.get(WANDB_ID_KEY))


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that, given ``resume_step``, continues the run dir's metrics.csv: it keeps the rows logged
    before that step (those at or after it were logged after the checkpoint was written, and are logged again)
    where Lightning's writer would delete the file."""

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step, self.continued = resume_step, False

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self.continued:
            return super().experiment
        path = Path(self.log_dir, ExperimentWriter.NAME_METRICS_FILE)
        header, kept = [], []
        if self.resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                kept = [row for row in reader if row.get("step") and int(row["step"]) < self.resume_step]
        writer = super().experiment  # deletes metrics.csv
        if header:
            with open(path, "w", newline="") as f:
                out = csv.DictWriter(f, fieldnames=header)
                out.writeheader()
                out.writerows(kept)
            writer.metrics_keys = header
            log.info("continuing %s from step %d", path, self.resume_step)
        self.continued = True
        return writer


def make_loggers(nodes: DictConfig, resumed: CheckpointFacts | None, wandb_identity: dict[str, Any]) -> list[Logger]:
    """Every logger of the config's ``logger`` node, whatever its class: the CSV logger continues a resumed run's
    metrics.csv, and W&B the same run (offline too), under this job's identity (alexnet_lab.records). A node that
    cannot be made stops the run with one line."""
    loggers = []
    for name, node in nodes.items():
        if node is None:
            continue
        extra: dict[str, Any] = {}
        target = get_class(node._target_)
        if issubclass(target, ResumableCSVLogger):
            extra["resume_step"] = resumed.global_step if resumed else None
        if issubclass(target, WandbLogger):
            resumes = {"id": resumed.wandb_run_id, "resume": "allow"} if resumed and resumed.wandb_run_id else {}
            extra.update(wandb_identity, **resumes)
        try:
            loggers.append(instantiate(node, _partial_=True)(**extra))  # (W&B takes a `config`, as instantiate)
            if isinstance(loggers[-1], WandbLogger):
                compat.without_wandb_anonymous(loggers[-1])
        except Exception as error:
            cause = error.__cause__ or error
            raise UserError(f"logger.{name!s} could not be made: {' '.join(str(cause).split())}") from error
    return loggers


# -- which checkpoint a run resumes from ---------------------------------------------------------------------
# Resuming may name the checkpoint and train for longer; neither makes it another job.
RESUME_KEYS = ("ckpt_path=", "trainer.max_epochs=")


def _without_resume_keys(overrides: list[str]) -> list[str]:
    return sorted(o for o in overrides if not o.startswith(RESUME_KEYS))


def _same_job(job_dir: Path, overrides: list[str]) -> bool:
    saved = job_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return False
    return _without_resume_keys([str(o) for o in OmegaConf.load(saved)]) == _without_resume_keys(overrides)


def resolve_ckpt_path(ckpt_path: str | None, outputs_root: str | Path) -> str | None:
    """``last`` = this job dir's last.ckpt if it has one, else the newest last.ckpt of an earlier run with the
    same overrides (but for ckpt_path and trainer.max_epochs) under ``outputs_root``. Anything else must be an
    existing file. A job that SLURM requeued (SLURM_RESTART_COUNT > 0) resumes from ``last`` by itself. In a
    sweep, a job given ``last`` that has no checkpoint yet starts from scratch (the sweep is resumed)."""
    if ckpt_path is None:
        if os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0"):
            try:
                return resolve_ckpt_path("last", outputs_root)
            except UserError:
                log.info("requeued job without a last.ckpt: starting from scratch")
        return None
    if ckpt_path != "last":
        if Path(ckpt_path).is_dir():
            inside = [
                p for p in (Path(ckpt_path, "checkpoints", "last.ckpt"), Path(ckpt_path, "last.ckpt")) if p.is_file()
            ]
            example = f" such as {inside[0]}" if inside else ""
            raise UserError(f"ckpt_path={ckpt_path} is a folder, not a checkpoint: give a .ckpt file{example}")
        if not Path(ckpt_path).is_file():
            raise UserError(f"ckpt_path={ckpt_path} does not exist: give a checkpoint file or ckpt_path=last")
        checkpoint_facts(ckpt_path)  # a file that is not one of our checkpoints stops here, with its name
        return str(ckpt_path)
    hydra = HydraConfig.get()
    if own := last_checkpoint(hydra.runtime.output_dir):
        return own
    overrides = list(hydra.overrides.task)
    candidates = [
        ckpt for ckpt in Path(outputs_root).glob("**/checkpoints/last.ckpt") if _same_job(ckpt.parent.parent, overrides)
    ]
    if not candidates and hydra.mode == RunMode.MULTIRUN:  # a sweep resumed: this job had not saved yet
        log.info("ckpt_path=last: this job of the sweep has no last.ckpt yet: starting it from scratch")
        return None
    if not candidates:
        raise UserError(
            f"ckpt_path=last: no earlier run under {outputs_root} with the overrides "
            f"{_without_resume_keys(overrides)} has a last.ckpt; give the checkpoint file instead"
        )
    return str(max(candidates, key=lambda p: p.stat().st_mtime))


def last_checkpoint(output_dir: str | Path) -> str | None:
    """The run dir's last.ckpt, if it has one."""
    path = Path(output_dir, "checkpoints", "last.ckpt")
    return str(path) if path.is_file() else None


RANK0_CKPT_ENV = "ALEXNET_LAB_RANK0_CKPT"
RANK0_WAIT_S = 600.0


def shared_ckpt_path(ckpt_path: str | None, outputs_root: str | Path, output_dir: str | Path) -> str | None:
    """:func:`resolve_ckpt_path`, chosen once by rank 0 for every rank of the job. The ranks rank 0 starts take
    its answer from the environment they inherit; the ranks of ``srun`` or torchrun, which start on their own,
    from a file rank 0 writes into the run dir they share (``output_dir``), named after this start of the
    job, so that a requeued job's ranks never read an earlier start's choice."""
    if int(os.environ.get("LOCAL_RANK") or 0) > 0 and RANK0_CKPT_ENV in os.environ:
        return os.environ[RANK0_CKPT_ENV] or None
    start = cluster.job_start()
    restarted = os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0")
    if start is None or (ckpt_path is None and not restarted):  # nothing to choose, or one process alone
        resolved = resolve_ckpt_path(ckpt_path, outputs_root)
    else:
        choice = Path(output_dir, f".ckpt_path-{start}")
        if cluster.process_rank() == 0:
            resolved = resolve_ckpt_path(ckpt_path, outputs_root)
            atomic_write(choice, lambda tmp: tmp.write_text(json.dumps(resolved)))
        else:
            resolved = _wait_for_rank0(choice)
    os.environ[RANK0_CKPT_ENV] = resolved or ""  # job_scope puts the environment back after the job
    return resolved


def _wait_for_rank0(choice: Path) -> str | None:
    deadline = time.monotonic() + RANK0_WAIT_S
    while not choice.is_file():
        if time.monotonic() > deadline:
            raise UserError(
                f"rank 0 did not choose the checkpoint to resume from within {RANK0_WAIT_S:.0f} s "
                f"({choice} is missing): see rank 0's error"
            )
        time.sleep(0.2)
    resolved = json.loads(choice.read_text())
    log.info("ckpt_path: %s, as rank 0 chose", resolved)
    return resolved


# -- checkpoints during training -----------------------------------------------------------------------------
def finite(pl_module: L.LightningModule) -> bool:
    """Whether the module's training loss has been finite so far (a module that does not say: yes)."""
    return bool(getattr(pl_module, "finite", lambda: True)())


class SafeCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that writes nothing once a training loss was not finite (the file before stays, the
    last finite one), and, saving every N training steps, skips a save that falls on an epoch's last step: the
    epoch-end checkpoint, after the validation, follows at once (README, "Checkpoints, preemption and exact
    resume", says why)."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        every = compat.every_n_train_steps(self)
        due = every and trainer.global_step % every == 0  # the module's read of the device, only then
        if due and not compat.at_last_batch(trainer) and finite(pl_module):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if finite(pl_module):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if finite(pl_module):
            super().on_validation_end(trainer, pl_module)


class Preemption(Checkpoint):
    """What a signal to stop does: README, "Checkpoints, preemption and exact resume". The handlers are installed
    when the callback is made, before the data are set up, and replace Lightning's (which broadcast from inside
    the handler). A signal sent to rank 0 alone is forwarded to the ranks it started, and all ranks agree at each
    step end, so they stop at the same step. It is a ``Checkpoint`` so that Lightning calls its epoch-end hook
    after the LightningModule's, which steps the lr schedule: the saved schedule is the next epoch's."""

    def __init__(
        self,
        dirpath: str,
        stop_signals: Sequence[str] = ("SIGTERM",),
        requeue_signals: Sequence[str] = ("SIGUSR1", "SIGUSR2"),
    ) -> None:
        unknown = [
            str(name)
            for name in (*stop_signals, *requeue_signals)
            if not isinstance(getattr(signal, str(name), None), signal.Signals)
        ]
        if unknown:
            raise UserError(f"callbacks.preemption: unknown signal(s) {unknown}: use names like SIGTERM")
        self.dirpath = Path(dirpath)
        self.requeue_signals = {signal.Signals[s] for s in requeue_signals}
        self.first: signal.Signals | None = None  # the first signal received
        self.saved = False
        self._trainer: L.Trainer | None = None
        self._previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in {signal.Signals[s] for s in (*stop_signals, *requeue_signals)}:
                self._previous[sig] = signal.signal(sig, self._handle)

    @property
    def path(self) -> Path:
        return self.dirpath / "last.ckpt"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._trainer = trainer
        for sig in self._previous:  # Lightning installs its own handlers in fit(): ours again
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.first is not None:
            return
        self.first = signal.Signals(signum)
        for proc in compat.started_ranks(self._trainer):
            proc.send_signal(signum)  # (a rank that has ended is skipped: Popen's own check)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not compat.at_last_batch(trainer):  # every rank knows it: they all skip this agreement alike
            self._save_if_signalled(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._save_if_signalled(trainer)

    def _save_if_signalled(self, trainer: L.Trainer) -> None:
        if self.saved or not trainer.strategy.reduce_boolean_decision(self.first is not None, all=False):
            return
        if not finite(trainer.lightning_module):  # ClassifierModule.finite stops the run: it diverged
            return
        trainer.save_checkpoint(self.path)
        self.saved = True
        name = self.first.name if self.first is not None else "a signal (on another rank)"
        rank_zero_info(f"{name} received: saved {self.path} at step {trainer.global_step}; resume with ckpt_path=last")
        if self.first in self.requeue_signals and trainer.is_global_zero and (job := cluster.slurm_job_id()):
            status = subprocess.call(["scontrol", "requeue", job])
            rank_zero_info(f"scontrol requeue {job}: " + ("done" if status == 0 else f"failed with status {status}"))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Exit here rather than right after the save: Lightning logs a step's metrics after its batch-end hooks.
        if self.saved:
            raise SystemExit(0)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._previous.items():
            # A time-limit warning after training (during the final validation or the figures) must not kill
            # the job with the signal's default action: what is left is short, and the limit itself still
            # ends it with SIGTERM.
            requeue_kills = sig in self.requeue_signals and handler == signal.SIG_DFL
            signal.signal(sig, signal.SIG_IGN if requeue_kills else handler)
        self._previous, self._trainer = {}, None
