"""Lightning callbacks of our own (the rest come from Lightning)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import lightning as L
from annotated_types import Interval
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from alexnet_lab import compat
from alexnet_lab.cluster import slurm_job_id
from alexnet_lab.errors import UserError
from alexnet_lab.report import FIG1_TARGET, epochs_to


class ImagesPerSecond(L.Callback):
    """Logs ``train/images_per_sec``: training images per second over each epoch, summed over all ranks."""

    def __init__(self) -> None:
        self.images, self.start = 0, time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.start = 0, time.perf_counter()

    on_train_start = on_train_epoch_start  # a run resumed mid-epoch does not start that epoch again

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.images += int(batch["label"].numel()) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self.start
        if self.images and seconds > 0:
            pl_module.log("train/images_per_sec", self.images / seconds, on_epoch=True, rank_zero_only=True)


class StepCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint(every_n_train_steps=N)`` that skips a save that falls on an epoch's last step: the
    epoch-end checkpoint, after the validation, follows at once. (Lightning resumes from a checkpoint of an
    epoch's last step by skipping that epoch's validation and its epoch-end hooks, the lr schedule's step
    among them, so a resumed run would not equal an uninterrupted one.)"""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not compat.at_last_batch(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)


class Preemption(Checkpoint):
    """Saves ``last.ckpt`` at the end of the step when a signal asks the run to stop, and exits 0 before the
    next step (a run whose last step it was simply finishes). A signal that arrives in an epoch's last step or
    its validation is acted on after the validation (see :class:`StepCheckpoint`).

    - ``stop_signals`` (SIGTERM: ``scancel``, a preemption, the time limit itself): save and exit. The job
      ends; if SLURM preempts with ``PreemptMode=REQUEUE``, SLURM requeues it itself.
    - ``requeue_signals`` (SIGUSR1: SLURM's time-limit warning ``--signal=USR1@90``; SIGUSR2: submitit's):
      save, exit, and under SLURM put the job back in the queue with ``scontrol requeue``. The requeued job
      continues in the same run dir from that checkpoint (:func:`alexnet_lab.config.claim_dir`,
      :func:`alexnet_lab.run.resolve_ckpt_path`).

    The first signal decides: SLURM follows ``scontrol requeue``, and the time limit, with a SIGTERM. The
    handlers are installed when the callback is made, before the data are set up, and replace Lightning's
    (which broadcast from inside the handler). A signal sent to rank 0 alone is forwarded to the ranks it
    started, and all ranks agree at each step end, so they stop at the same step.

    It is a ``Checkpoint`` so that Lightning calls its epoch-end hook after the LightningModule's, which steps
    the lr schedule: the saved schedule is then the one the next epoch uses.
    """

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
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

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
        trainer.save_checkpoint(self.path)
        self.saved = True
        name = self.first.name if self.first is not None else "a signal (on another rank)"
        rank_zero_info(f"{name} received: saved {self.path} at step {trainer.global_step}; resume with ckpt_path=last")
        if self.first in self.requeue_signals and trainer.is_global_zero and (job := slurm_job_id()):
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


class FirstEpochBelow(L.Callback):
    """Figure 1's measure, logged to W&B as it happens: ``fig1/epochs_to_target``, the number of epochs after
    which the epoch's ``metric`` (training error) first fell below ``threshold`` (alexnet_lab.report.epochs_to,
    which the sweep's report computes from metrics.csv)."""

    def __init__(
        self, metric: str = "train/top1_err", threshold: Annotated[float, Interval(gt=0, le=1)] = FIG1_TARGET
    ) -> None:
        self.metric, self.threshold = metric, threshold
        self.curve: list[tuple[int, float]] = []
        self.logged = False

    def _check(self, trainer: L.Trainer) -> None:
        # the epoch's training metrics reach callback_metrics after the epoch-end hooks: read them at the
        # start of the next epoch, or at the end of training
        value = trainer.callback_metrics.get(self.metric)
        done = trainer.current_epoch
        if value is not None and done > 0 and (not self.curve or self.curve[-1][0] < done - 1):
            self.curve.append((done - 1, float(value)))
        epochs = epochs_to(self.curve, self.threshold)
        if epochs is not None and not self.logged and trainer.is_global_zero:
            self.logged = True
            for logger in trainer.loggers:
                logger.log_metrics({"fig1/epochs_to_target": float(epochs)}, step=trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)
