"""What makes a run survive a kill: atomic checkpoint files, the facts a resumed run needs from its checkpoint,
and a metrics CSV that a resumed run continues instead of overwriting."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

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
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp), fsync=True)


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
        raise UserError(f"ckpt_path={path} is not a checkpoint (torch.load cannot read it): give a .ckpt file "
                        "from a run's checkpoints/ folder") from error  # fmt: skip
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or key not in ckpt]
    if not missing and "net" not in (ckpt["hyper_parameters"] or {}):
        missing = ["hyper_parameters.net"]
    if missing:
        raise UserError(f"ckpt_path={path} is not a checkpoint written by src/train.py (it has no "
                        f"{', '.join(missing)}): give a .ckpt file from a run's checkpoints/ folder")  # fmt: skip
    return CheckpointFacts(int(ckpt["global_step"]), int(ckpt.get("epoch", 0)), ckpt.get(WANDB_ID_KEY))


class _ContinuingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv. This one keeps its rows before ``resume_step``
    (the rows at or after it were logged after the checkpoint was written and are logged again) and appends."""

    def __init__(self, log_dir: str, resume_step: int | None) -> None:
        self.resume_step = resume_step
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if self.resume_step is None or not path.is_file():
            super()._check_log_dir_exists()
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            kept = [row for row in reader if row.get("step") and int(row["step"]) < self.resume_step]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header)
            writer.writeheader()
            writer.writerows(kept)
        self.metrics_keys = header
        log.info("continuing %s from step %d", path, self.resume_step)


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that, given ``resume_step``, continues the run dir's metrics.csv without duplicate steps."""

    def __init__(self, *args: Any, resume_step: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if not isinstance(self._experiment, ExperimentWriter):
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(self.log_dir, self.resume_step)
        return self._experiment
