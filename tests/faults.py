"""Faults that tests inject into real training runs, as extra callbacks given on the command line:
``+callbacks.fault._target_=faults.SignalAtStep +callbacks.fault.step=3 ...`` with tests/ on PYTHONPATH."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L


class SignalAtStep(L.Callback):
    """Sends ``signal`` to this very process once, when rank ``rank`` has finished training step ``step``."""

    def __init__(self, step: int, signal: str = "SIGKILL", rank: int = 0) -> None:
        self.step, self.signal, self.rank, self.sent = step, signal, rank, False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        if not self.sent and trainer.global_step == self.step and trainer.global_rank == self.rank:
            self.sent = True
            os.kill(os.getpid(), signal.Signals[self.signal])
