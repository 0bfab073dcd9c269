"""DDP that works inside a Hydra multirun.

Lightning starts ranks 1..N-1 by re-running the script with ``sys.argv`` plus ``hydra.run.dir`` set to the
*run* dir pattern. Inside ``-m`` that argv is the whole sweep, so every child replays every job of the sweep,
and its run dir is a fresh timestamped folder nobody asked for. Here the child's command is rebuilt from the
current job alone: its own overrides, its own output dir, and no ``-m``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

from lightning.pytorch.strategies import DDPStrategy, StrategyRegistry
from lightning.pytorch.strategies.launchers import subprocess_script
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher


def job_command(local_rank: int) -> tuple[Sequence[str], str]:
    """The command that runs rank ``local_rank`` of the current Hydra job, and the dir to run it in."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    import __main__

    hydra = HydraConfig.get()
    if __main__.__spec__ is None:
        script = [sys.executable, str(Path(get_original_cwd(), sys.argv[0]).resolve())]
    else:
        script = [sys.executable, "-m", __main__.__spec__.name]
    extra_dirs = [s.path for s in hydra.runtime.config_sources if s.provider == "command-line"]  # --config-dir
    command = [
        *script,
        *(f"--config-dir={d}" for d in extra_dirs),
        f"--config-name={hydra.job.config_name}",
        *hydra.overrides.task,
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        f"hydra.job.name={hydra.job.name}_rank{local_rank}",
        "hydra.output_subdir=null",  # rank 0 already wrote .hydra/ for this job
        "hydra.job.chdir=False",
    ]
    return command, get_original_cwd()


class _JobLauncher(_SubprocessScriptLauncher):
    def _call_children_scripts(self) -> None:
        with mock.patch.object(subprocess_script, "_hydra_subprocess_cmd", job_command):
            super()._call_children_scripts()


class SweepSafeDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose child processes run the current Hydra job only (see the module doc)."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _SubprocessScriptLauncher):
            assert self.cluster_environment is not None
            self._launcher = _JobLauncher(self.cluster_environment, self.num_processes, self.num_nodes)


STRATEGY_NAME = "ddp_sweep_safe"
StrategyRegistry.register(
    STRATEGY_NAME, SweepSafeDDPStrategy, description="DDP whose child processes run the current Hydra job only",
    override=True,
)  # fmt: skip
