"""Lightning callbacks of our own (the rest come from Lightning)."""

from __future__ import annotations

import time
from typing import Any

import lightning as L


class ImagesPerSecond(L.Callback):
    """Logs ``train/images_per_sec``: training images per second over each epoch, summed over all ranks."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.start = 0, time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.images += int(batch["label"].numel()) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self.start
        if self.images and seconds > 0:
            pl_module.log("train/images_per_sec", self.images / seconds, on_epoch=True, rank_zero_only=True)
