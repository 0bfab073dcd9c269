"""Sweeps (``-m``): every job's config is checked before the first job runs. (Each job's own start is
alexnet_lab.launch.job_scope; the report, alexnet_lab.report.)"""

from __future__ import annotations

from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet_lab import compat, settings
from alexnet_lab.cli import explain
from alexnet_lab.errors import UserError, user_errors


class SweepCheck(Callback):
    """Hydra callback: before a sweep's first job, every job's config is composed and checked
    (:func:`alexnet_lab.settings.check_config`), so that a mistake in its fifth job does not wait for four
    jobs to train. A mistake ends the sweep with one ``error:`` line and exit status 2, as in a single run;
    nothing is written. Hydra's basic sweeper (which the submitit launchers use too) is checked; other
    sweepers choose their jobs as they go."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
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
                    settings.check_config(job_config, config.hydra.job.config_name, job)
                except Exception as e:
                    message = str(e) if isinstance(e, UserError) else explain(e)
                    if message is None:
                        raise  # not about the config: the job itself will meet it
                    raise UserError(f"{message} (in job {number} of the sweep: {' '.join(job)})") from e
