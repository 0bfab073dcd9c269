"""Sweeps (``-m``): every job's config is checked before the first job runs, and SLURM's refusal of the jobs is
one line. (Each job's own start is alexnet_lab.launch.job_scope; the report, alexnet_lab.report.)"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet_lab import compat
from alexnet_lab.config import claimed_dirs
from alexnet_lab.errors import UserError, user_errors


class SweepCheck(Callback):
    """Hydra callback: before a sweep's first job, every job's config is composed and checked
    (:func:`alexnet_lab.settings.check_config`), so that a mistake in its fifth job does not wait for four
    jobs to train. A mistake ends the sweep with one ``error:`` line and exit status 2, as in a single run;
    nothing is written. Hydra's basic sweeper (which the submitit launchers use too) is checked; other
    sweepers choose their jobs as they go."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        from alexnet_lab import settings

        if config.hydra.sweeper.get("_target_") != compat.BASIC_SWEEPER:
            return
        loader = GlobalHydra.instance().config_loader()
        typed = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)  # as typed, like the sweeper's
        assert isinstance(typed, list)
        overrides = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()] + list(map(str, typed))
        # Hydra turns a callback's exception into a warning: user_errors() exits instead (SystemExit)
        with user_errors():
            for number, job in enumerate(compat.basic_sweeper_jobs(overrides, loader)):
                try:
                    job_config = loader.load_sweep_config(config, job)
                    with open_dict(job_config):
                        del job_config["hydra"]
                    settings.check_config(job_config, config.hydra.job.config_name)
                except Exception as e:
                    message = str(e) if isinstance(e, UserError) else settings.explain(e)
                    if message is None:
                        raise  # not about the config: the job itself will meet it
                    raise UserError(f"{message} (in job {number} of the sweep: {' '.join(job)})") from e


def scheduler_refused(error: BaseException) -> str | None:
    """SLURM's refusal of a sweep's jobs (a partition, account, time limit or resources that ``sbatch`` does
    not accept), which submitit raises with sbatch's words, as one line; the sweep dir that this command
    claimed, holding only the jobs' submission files, is removed."""
    utils = sys.modules.get("submitit.core.utils")  # not loaded: no sweep was submitted, so nothing to explain
    if not (utils and isinstance(error, utils.FailedJobError) and str(error).startswith("sbatch: error:")):
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
