"""What a run records about itself, and the names that group runs: summary.json, a job's variant (its overrides
but the seed), and its W&B identity. Imports no torch, so that src/report.py starts at once."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.files import atomic_write

if TYPE_CHECKING:
    import lightning as L

SUMMARY_FILE = "summary.json"
METRICS_FILE = "csv/metrics.csv"


def variant(overrides: list[str]) -> str:
    """A job's overrides but its seed (and checkpoint): what jobs that differ only by seed have in common."""
    return ",".join(o for o in overrides if not o.startswith(("seed=", "ckpt_path="))) or "default"


def read_keys(cfg: DictConfig) -> set[str]:
    """The keys that interpolations in ``cfg`` read (``${input_size}``, ``${ablation.norm}``), from one text of it: a
    key that only the net and the data read, through one, changes nothing in a run whose config reads it nowhere."""
    return set(re.findall(r"\$\{([\w.]+)\}", OmegaConf.to_yaml(cfg)))


def ablation_choices(cfg: DictConfig) -> dict[str, str]:
    """The option taken in each ablation group that the run reads: the net's config passes the group on
    (``${ablation.<group>}``) as its argument of that name (LeNet-5 takes ``activation`` alone)."""
    read = read_keys(cfg)
    return {group: str(choice) for group, choice in (cfg.get("ablation") or {}).items() if f"ablation.{group}" in read}


def choices_line(cfg: DictConfig) -> str:
    """This job's choice in each config group (model=alexnet norm=lrn ...), Hydra's own groups apart, data_model,
    which train.yaml derives from data and model, and the ablation groups that the net does not take."""
    picked = reversed(HydraConfig.get().runtime.choices.items())  # Hydra keeps them last first
    unused = set(cfg.get("ablation") or {}) - set(ablation_choices(cfg))
    shown = [(g, c) for g, c in picked if c and not g.startswith("hydra") and g not in {"data_model", *unused}]
    return " ".join(f"{group}={choice}" for group, choice in shown)


def wandb_identity(cfg: DictConfig) -> dict[str, Any]:
    """group = the sweep (one per ``-m`` invocation), name = the job's overrides, job_type = the overrides but
    the seed (so W&B's grouping by job type draws one band per variant over its seeds), tags = the choices and
    ``tags``, config = the resolved config plus the choices."""
    hydra = HydraConfig.get()
    group = Path(hydra.sweep.dir if hydra.mode == RunMode.MULTIRUN else hydra.runtime.output_dir).name
    picked = {**ablation_choices(cfg), "gpus": str(cfg.gpus)}  # the ablation groups the net takes, and gpus
    overrides = list(hydra.overrides.task)
    job_type = variant(overrides)
    if len(job_type) > 64:  # W&B's limit on a job type: the start, and a digest that keeps it distinct
        job_type = f"{job_type[:55]}~{hashlib.sha1(job_type.encode()).hexdigest()[:8]}"
    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(config, dict)
    return {
        "group": group,
        "name": ",".join(o for o in overrides if not o.startswith("ckpt_path=")) or "default",
        "job_type": job_type,
        "tags": [f"{k}={v}" for k, v in picked.items()] + list(cfg.get("tags") or []),
        "config": {**config, "choices": picked},
    }


def crop_protocol(test_crops: int | None) -> str:
    """How val images are judged; CIFAR-10 and MNIST (no test_crops) whole."""
    if test_crops is None:
        return "whole image"
    return "ten crops, softmax averaged (section 4.1)" if test_crops == 10 else "centre crop"


def errors(metrics: Any) -> dict[str, float]:
    return {key: float(metrics[f"val/{key}"]) for key in ("top1_err", "top5_err") if f"val/{key}" in metrics}


def last_epoch_errors(trainer: L.Trainer) -> dict[str, Any]:
    """The last epoch's val errors, as logged at its end (read before anything else is validated)."""
    return {"epoch": trainer.current_epoch - 1, **errors(trainer.callback_metrics)}


def best_epoch_errors(epoch: int | None, metrics: dict[str, float]) -> dict[str, Any]:
    """The best epoch's errors: the epoch with the lowest val top-1 error, chosen on the validation set itself,
    so the number is optimistic (the paper's test-set numbers come from a model chosen without them)."""
    return {"epoch": epoch, **errors(metrics), "selected_on": "val"}


def write_summary(trainer: L.Trainer, out_dir: str | Path, **fields: Any) -> None:
    if trainer.is_global_zero:
        text = json.dumps(fields, indent=2, default=float) + "\n"
        atomic_write(Path(out_dir, SUMMARY_FILE), lambda tmp: tmp.write_text(text))


def reference_check(measured: dict[str, float], published: dict[str, float]) -> str:
    """One line: the centre crop's errors beside those published for the net's weights, and the verdict: within
    0.5 points the data and the pipeline are right; else the likely causes."""
    numbers = ", ".join(
        f"{key.replace('_err', '')} error {100 * measured[key]:.2f}% (published {100 * published[key]:.2f}%)"
        for key in published
    )
    if all(abs(100 * (measured[key] - published[key])) <= 0.5 for key in published):
        return f"reference check: {numbers}: within 0.5 points, your data and this pipeline are right"
    return (
        f"reference check FAILED: {numbers}: more than 0.5 points off. Likely causes: the val labels in another "
        "order (the layout's val labels: val/<wnid>/ folders, the devkit, LOC_val_solution.csv), a wrong layout "
        "or data.root, or the preprocessing (short side to 256, centre crop; prepared shards re-encoded)"
    )
