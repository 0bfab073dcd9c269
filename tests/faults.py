"""Faults that tests inject into real training runs, as extra callbacks given on the command line:
``+callbacks.fault._target_=faults.SignalAtStep +callbacks.fault.step=3 ...`` with tests/ on PYTHONPATH."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import lightning as L


class SignalAtStep(L.Callback):
    """Sends ``signal`` to this very process once, when rank ``rank`` has finished training step ``step``
    (``during="train"``), or in the first validation batch after that step (``during="validation"``), or in the
    first batch of the validation after fit (``during="final"``, whatever the step)."""

    def __init__(self, step: int = 0, signal: str = "SIGKILL", rank: int = 0, during: str = "train") -> None:
        if during not in ("train", "validation", "final"):
            raise ValueError(f"during={during!r}: use train, validation or final")
        self.step, self.signal, self.rank, self.during, self.sent = step, signal, rank, during, False

    def _maybe_send(self, trainer: L.Trainer, during: str) -> None:
        if not self.sent and during == self.during and trainer.global_step == self.step and \
                trainer.global_rank == self.rank:  # fmt: skip
            self.sent = True
            os.kill(os.getpid(), signal.Signals[self.signal])

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        self._maybe_send(trainer, "train")

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:  # fmt: skip
        if trainer.state.fn == "validate" and self.during == "final" and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.Signals[self.signal])
        elif not trainer.sanity_checking:
            self._maybe_send(trainer, "validation")


class SlowSteps(L.Callback):
    """Each training step takes ``seconds`` longer, so that a test can signal a run while it trains; after each
    step rank 0 writes the number of steps done to ``progress`` (a file). A requeued SLURM job (restart count
    above 0) trains at full speed: only the allocation that is signalled needs to be slow."""

    def __init__(self, seconds: float, progress: str) -> None:
        self.seconds, self.progress = seconds, Path(progress)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        if trainer.is_global_zero:
            self.progress.write_text(str(trainer.global_step))
        if os.environ.get("SLURM_RESTART_COUNT", "0") == "0":
            time.sleep(self.seconds)
