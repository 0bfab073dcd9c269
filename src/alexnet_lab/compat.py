"""The only module that touches private names of Lightning, Hydra and torch. Each is here because no public API
does the job; tests/test_compat.py names each one and fails, saying which, when an upgrade removes it."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from unittest import mock

import hydra._internal.utils as hydra_utils
import lightning as L
import torch
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers import subprocess_script

from alexnet_lab.errors import user_errors

# -- Lightning: where the training loop stands ----------------------------------------------------------------


def batches_done(trainer: L.Trainer) -> int:
    """Batches of the current epoch trained on, as a checkpoint written now would record them."""
    progress: Any = trainer.fit_loop.epoch_loop.batch_progress.current
    return int(progress.processed)


def at_last_batch(trainer: L.Trainer) -> bool:
    """Whether the training step that just ended was its epoch's last."""
    return bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)


def validates_after_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning validates once the training step that just ended is done: its own decision, which it
    makes after the step's batch-end hooks (an epoch's end, a ``val_check_interval``, a fit told to stop)."""
    loop = trainer.fit_loop
    return bool(loop.epoch_loop._should_check_val_fx(loop._data_fetcher))  # type: ignore[arg-type]


def every_n_train_steps(callback: Any) -> int:
    """A ModelCheckpoint's every_n_train_steps (0: it saves on no step), which it keeps as given."""
    return int(callback._every_n_train_steps or 0)


def show_in_progress_bar(trainer: L.Trainer, values: dict[str, float]) -> None:
    """Shows ``values`` in the progress bar until they are shown again. ``trainer.progress_bar_metrics`` is the dict
    the bar reads; Lightning only adds to it. (Logged with ``prog_bar=True``, a value is read on the host at every
    batch end, which makes the CPU wait for the GPU.)"""
    trainer.progress_bar_metrics.update(values)


def without_wandb_anonymous(logger: Any) -> None:
    """Lightning's WandbLogger hands wandb.init ``anonymous=None`` when not asked for it, which wandb 0.31 warns
    about at every run ("The anonymous setting has no effect"): the argument is dropped before the run starts."""
    logger._wandb_init.pop("anonymous", None)


# -- Lightning: the ranks that DDP starts on this node --------------------------------------------------------

SubprocessScriptLauncher = subprocess_script._SubprocessScriptLauncher


class HookedDDPStrategy(DDPStrategy):
    """``DDPStrategy`` whose launcher of the other ranks on this node (Lightning's subprocess-script launcher)
    asks :meth:`rank_command` for each rank's command line (Lightning's re-runs ``sys.argv``), calls
    :meth:`starting_ranks` before it starts them (their environment is this process's) and :meth:`ranks_started`
    after, with the processes, and starts no process observer of its own (Lightning's polls every
    5 s, then SIGKILLs this process without a word of which rank died)."""

    def rank_command(self, local_rank: int) -> tuple[Sequence[str], str]:
        """The command that starts rank ``local_rank``, and the folder to start it in."""
        raise NotImplementedError

    def starting_ranks(self) -> None:
        """Called in rank 0 before the other ranks of this node are started."""

    def ranks_started(self, procs: list[subprocess.Popen]) -> None:
        """Called in rank 0 once the other ranks of this node are started."""

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if type(self._launcher) is SubprocessScriptLauncher:
            assert self.cluster_environment is not None
            self._launcher = _HookedLauncher(self, self.cluster_environment, self.num_processes, self.num_nodes)


class _HookedLauncher(SubprocessScriptLauncher):
    def __init__(self, strategy: HookedDDPStrategy, *args: Any) -> None:
        super().__init__(*args)
        self.strategy = strategy

    def launch(self, function: Callable, *args: Any, trainer: Any = None, **kwargs: Any) -> Any:
        with mock.patch.object(subprocess_script, "_launch_process_observer", lambda procs: None):
            return super().launch(function, *args, trainer=trainer, **kwargs)

    def _call_children_scripts(self) -> None:
        self.strategy.starting_ranks()
        with mock.patch.object(subprocess_script, "_hydra_subprocess_cmd", self.strategy.rank_command):
            super()._call_children_scripts()
        self.strategy.ranks_started(self.procs)


def started_ranks(trainer: L.Trainer | None) -> list[subprocess.Popen]:
    """The processes of the ranks that this process started (none in a rank that was started)."""
    launcher = trainer.strategy.launcher if trainer is not None else None
    return list(launcher.procs) if isinstance(launcher, SubprocessScriptLauncher) else []


# -- Hydra ----------------------------------------------------------------------------------------------------

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def basic_sweeper_jobs(overrides: list[str], config_loader: Any) -> list[list[str]]:
    """The overrides of each job Hydra's basic sweeper makes of ``overrides`` (a sweep's, as typed), in its order."""
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


@contextmanager
def hydra_errors_explained(explain: Callable[[BaseException], str | None]) -> Iterator[None]:
    """While an entry point runs: an error Hydra meets while composing the config or launching the jobs (it
    reports them in ``hydra._internal.utils.run_and_report``, over several lines) that ``explain`` puts in one
    line ends with ``error: <line>`` and exit status 2 (alexnet_lab.errors.user_errors)."""
    report = hydra_utils.run_and_report

    def explained(func: Callable[[], Any]) -> Any:
        def run() -> Any:
            with user_errors(explain):
                return func()

        return report(run)

    with mock.patch.object(hydra_utils, "run_and_report", explained):
        yield


# -- torch ----------------------------------------------------------------------------------------------------


def shared_uint8(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor in shared memory, allocated as default_collate does: share_memory_() on a
    new tensor would also copy its (meaningless) contents."""
    storage = torch.UntypedStorage._new_shared(math.prod(shape))
    return torch.empty(0, dtype=torch.uint8).set_(storage).view(shape)
