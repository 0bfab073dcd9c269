"""What the entry points share: Hydra job facts, W&B run identity, checkpoint lookup, one-line user errors."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationResolutionError

from alexnet_lab import cluster, schema
from alexnet_lab.config import claimed_dirs
from alexnet_lab.errors import UserError
from alexnet_lab.files import atomic_write
from alexnet_lab.resume import checkpoint_facts

log = logging.getLogger(__name__)

ABLATION_GROUPS = ("norm", "pooling", "activation", "init")
SUMMARY_FILE = "summary.json"


@contextmanager
def user_errors() -> Iterator[None]:
    """A user's mistake ends the run with its one-line message and exit status 2, not a traceback.

    Hydra's instantiate wraps errors (``raise InstantiationException(...) from e``), so the cause chain is
    searched; OmegaConf drops the cause of a resolver's error, so its message is used instead.
    """
    try:
        yield
    except Exception as e:
        message = None
        cause: BaseException | None = e
        while cause is not None and message is None:
            if isinstance(cause, UserError):
                message = str(cause)
            elif isinstance(cause, InterpolationResolutionError):
                text = str(cause).splitlines()[0]
                message = text.partition("while resolving interpolation: ")[2] or text
            elif isinstance(cause, InstantiationException) and (unknown := _unknown_argument(cause)):
                message = unknown
            elif isinstance(cause, MisconfigurationException):  # Lightning refusing what it was asked for
                message = _lightning_refused(cause)
            cause = cause.__cause__
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _lightning_refused(error: MisconfigurationException) -> str:
    """Lightning's own words, on one line; about devices, with where ours are chosen."""
    text = " ".join(str(error).split())
    about_devices = re.search(r"gpu|cuda|mps|tpu|device|accelerator", text, re.IGNORECASE)
    hint = " (gpus=, trainer.accelerator= and trainer.devices= choose the devices)" if about_devices else ""
    return f"Lightning refused the settings: {text}{hint}"


def _unknown_argument(error: InstantiationException) -> str | None:
    """A key added with ``+group.key=`` that the target's constructor does not take."""
    found = re.search(r"unexpected keyword argument '(\w+)'", str(error.__cause__))
    target = re.search(r"target '([\w.]+)'", str(error))
    node = re.search(r"full_key: ([\w.]+)", str(error))
    if not (found and target and node):
        return None
    return f"{node[1]}.{found[1]} is not an argument of {target[1]}: remove +{node[1]}.{found[1]}"


def cli(main: Callable[[], Any]) -> None:
    """Runs an entry point's ``@hydra.main`` function. A mistake in the config that Hydra finds while composing
    it (a value of the wrong type, an unknown key, a choice that does not exist) ends, like a
    :class:`UserError`, with one ``error: ...`` line and exit status 2, instead of Hydra's report over several
    lines and status 1. ``HYDRA_FULL_ERROR=1`` still shows the traceback.

    Hydra reports such errors in ``hydra._internal.utils.run_and_report``, which the entry point calls; it is
    wrapped here for the call.
    """
    import hydra._internal.utils as hydra_utils

    report = hydra_utils.run_and_report

    def explained(func: Callable[[], Any]) -> Any:
        def run() -> Any:
            try:
                return func()
            except Exception as error:
                message = schema.explain(error) or scheduler_refused(error)
                if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"error: {message}", file=sys.stderr)
                sys.exit(2)

        return report(run)

    with mock.patch.object(hydra_utils, "run_and_report", explained):
        main()


def scheduler_refused(error: BaseException) -> str | None:
    """SLURM's refusal of a sweep's jobs (a partition, account, time limit or resources that ``sbatch`` does
    not accept), which submitit raises with sbatch's words, as one line; the sweep dir that this command
    claimed, holding only the jobs' submission files, is removed."""
    from submitit.core.utils import FailedJobError

    if not (isinstance(error, FailedJobError) and str(error).startswith("sbatch: error:")):
        return None
    words = "; ".join(line.removeprefix("sbatch: error:").strip() for line in str(error).splitlines() if line.strip())
    command = getattr(error.__cause__, "cmd", None) or [""]  # sbatch <sweep dir>/.submitit/<submission file>
    submitit_dir = next((p for p in Path(command[-1]).parents if p.name == ".submitit"), None)
    if submitit_dir is not None:
        sweep_dir = submitit_dir.parent
        only_this_attempt = {p.name for p in sweep_dir.iterdir()} <= {"multirun.yaml", ".submitit"}
        if sweep_dir.resolve() in claimed_dirs() or only_this_attempt:
            shutil.rmtree(sweep_dir, ignore_errors=True)
    return f"SLURM refused the jobs: {words}: check the hydra.launcher settings (partition, account, timeout_min, ...)"


def check_config(cfg: DictConfig) -> None:
    """At start-up, before any data is read: every value within its allowed range (alexnet_lab.schema), and
    settings that only fail together."""
    schema.check_values(cfg)
    check_plateau_has_validation(cfg)


def check_plateau_has_validation(cfg: DictConfig) -> None:
    """The plateau schedule reads val/top1_err at every epoch's end, so every epoch must validate. Without this
    check the run would stop at the end of its first epoch, before that epoch's checkpoint."""
    model, trainer = cfg.get("model"), cfg.get("trainer")
    if model is None or trainer is None or model.get("schedule") != "plateau":
        return
    every, limit = trainer.get("check_val_every_n_epoch", 1), trainer.get("limit_val_batches", 1.0)
    if every == 1 and limit != 0:
        return
    shown = "null" if every is None else every
    cause = f"trainer.limit_val_batches={limit}" if every == 1 else f"trainer.check_val_every_n_epoch={shown}"
    raise UserError(f"model.schedule=plateau steps on val/top1_err at every epoch's end, and {cause} leaves epochs "
                    "without it: validate every epoch, or use model.schedule=step")  # fmt: skip


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The overrides of each job the basic sweeper will run for ``config`` (a multirun's), in its order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)  # as typed, like the sweeper's
    assert isinstance(task, list)
    params += [str(override) for override in task]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    return [job for batch in BasicSweeper.split_arguments(parser.parse_overrides(params), None) for job in batch]


class SweepCheck(Callback):
    """Hydra callback: before a sweep's first job, every job's config is composed and checked
    (:func:`check_config`), so that a mistake in its fifth job does not wait for four jobs to train. A mistake
    ends the sweep with one ``error:`` line and exit status 2, as in a single run; nothing is written."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        if config.hydra.sweeper.get("_target_") != BASIC_SWEEPER:
            return  # other sweepers choose their jobs as they go
        loader = GlobalHydra.instance().config_loader()
        # Hydra turns a callback's exception into a warning: user_errors() exits instead (SystemExit)
        with user_errors():
            for number, job in enumerate(sweep_jobs(config)):
                try:
                    job_config = loader.load_sweep_config(config, job)
                    with open_dict(job_config):
                        del job_config["hydra"]
                    check_config(job_config)
                except Exception as e:
                    message = str(e) if isinstance(e, UserError) else schema.explain(e)
                    if message is None:
                        raise  # not about the config: the job itself will meet it
                    raise UserError(f"{message} (in job {number} of the sweep: {' '.join(job)})") from e


def choices(cfg: DictConfig) -> dict[str, str]:
    """The option taken in each ablation group, and ``gpus``."""
    picked = HydraConfig.get().runtime.choices
    out = {group: str(picked.get(group)) for group in ABLATION_GROUPS}
    out["gpus"] = str(cfg.gpus)
    return out


def variant(overrides: list[str]) -> str:
    """A job's overrides but its seed (and checkpoint): what jobs that differ only by seed have in common."""
    return ",".join(o for o in overrides if not o.startswith(("seed=", "ckpt_path="))) or "default"


def wandb_identity(cfg: DictConfig) -> dict[str, Any]:
    """group = the sweep (one per ``-m`` invocation), name = the job's overrides, job_type = the overrides but
    the seed (so W&B's grouping by job type draws one band per variant over its seeds), tags = the choices,
    config = the resolved config plus the choices."""
    hydra = HydraConfig.get()
    multirun = hydra.mode == RunMode.MULTIRUN
    group = Path(hydra.sweep.dir if multirun else hydra.runtime.output_dir).name
    picked = choices(cfg)
    overrides = list(hydra.overrides.task)
    name = ",".join(o for o in overrides if not o.startswith("ckpt_path=")) or "default"
    job_type = variant(overrides)
    if len(job_type) > 64:  # W&B's limit on a job type: the start, and a digest that keeps it distinct
        job_type = f"{job_type[:55]}~{hashlib.sha1(job_type.encode()).hexdigest()[:8]}"
    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(config, dict)
    return {
        "group": group,
        "name": name,
        "job_type": job_type,
        "tags": [f"{k}={v}" for k, v in picked.items()],
        "config": {**config, "choices": picked},
    }


def _same_job(job_dir: Path, overrides: list[str]) -> bool:
    saved = job_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return False
    theirs = [str(o) for o in OmegaConf.load(saved)]
    return _without_ckpt(theirs) == _without_ckpt(overrides)


# Resuming may name the checkpoint and train for longer; neither makes it another job.
RESUME_KEYS = ("ckpt_path=", "trainer.max_epochs=")


def _without_ckpt(overrides: list[str]) -> list[str]:
    return sorted(o for o in overrides if not o.startswith(RESUME_KEYS))


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
    own = Path(hydra.runtime.output_dir, "checkpoints", "last.ckpt")
    if own.is_file():
        return str(own)
    overrides = list(hydra.overrides.task)
    candidates = [
        ckpt for ckpt in Path(outputs_root).glob("**/checkpoints/last.ckpt") if _same_job(ckpt.parent.parent, overrides)
    ]
    if not candidates and hydra.mode == RunMode.MULTIRUN:  # a sweep resumed: this job had not saved yet
        log.info("ckpt_path=last: this job of the sweep has no last.ckpt yet: starting it from scratch")
        return None
    if not candidates:
        raise UserError(
            f"ckpt_path=last: no earlier run under {outputs_root} with the overrides {_without_ckpt(overrides)} "
            "has a last.ckpt; give the checkpoint file instead"
        )
    return str(max(candidates, key=lambda p: p.stat().st_mtime))


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
            raise UserError(f"rank 0 did not choose the checkpoint to resume from within {RANK0_WAIT_S:.0f} s "
                            f"({choice} is missing): see rank 0's error")  # fmt: skip
        time.sleep(0.2)
    resolved = json.loads(choice.read_text())
    log.info("ckpt_path: %s, as rank 0 chose", resolved)
    return resolved


def crop_protocol(test_crops: int | None) -> str:
    """How val images are judged; CIFAR-10 and MNIST (no test_crops) whole."""
    if test_crops is None:
        return "whole image"
    return "ten crops, softmax averaged (section 4.1)" if test_crops == 10 else "centre crop"


def last_epoch_errors(trainer: L.Trainer) -> dict[str, float]:
    """The last epoch's val errors, as logged at its end (read before anything else is validated)."""
    metrics = trainer.callback_metrics
    return {
        "epoch": trainer.current_epoch - 1,
        **{key: float(metrics[f"val/{key}"]) for key in ("top1_err", "top5_err") if f"val/{key}" in metrics},
    }


def best_epoch_errors(best_ckpt: str, metrics: dict[str, float]) -> dict[str, Any]:
    """The best epoch's errors: the epoch with the lowest val top-1 error, chosen on the validation set itself,
    so the number is optimistic (the paper's test-set numbers come from a model chosen without them)."""
    epoch = checkpoint_facts(best_ckpt).epoch if best_ckpt else None
    errors = {key: float(metrics[f"val/{key}"]) for key in ("top1_err", "top5_err") if f"val/{key}" in metrics}
    return {"epoch": epoch, **errors, "selected_on": "val"}


def write_summary(trainer: L.Trainer, out_dir: str | Path, **fields: Any) -> None:
    if trainer.is_global_zero:
        Path(out_dir, SUMMARY_FILE).write_text(json.dumps(fields, indent=2, default=float) + "\n")


def default_wandb_mode() -> None:
    """W&B never asks for a login: runs are kept on disk unless WANDB_MODE says otherwise."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
