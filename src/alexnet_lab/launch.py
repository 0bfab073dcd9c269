"""DDP that works inside a Hydra multirun.

Lightning starts ranks 1..N-1 by re-running the script with ``sys.argv`` plus ``hydra.run.dir`` set to the
*run* dir pattern. Inside ``-m`` that argv is the whole sweep, so every child replays every job of the sweep,
and its run dir is a fresh timestamped folder nobody asked for. Here the child's command is rebuilt from the
current job alone: its own overrides, its own output dir, and no ``-m``.

When a rank dies, the others would wait in their next collective. Watchdog threads end the job instead, with
a message naming the dead rank: rank 0 watches the ranks it started, and they watch rank 0. (Under torchrun or
SLURM, the launcher does this.)

Lightning leaves a DDP job's traces in the process that Hydra's basic launcher runs the next job of a sweep in:
the rendezvous variables (``LOCAL_RANK`` tells the next job that its ranks were started by someone else) and the
process group (with peers that have exited). :func:`job_scope` gives each job a clean start.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from alexnet_lab import compat
from alexnet_lab.errors import UserError

_entry_script: str | None = None  # the entry point running the current job (set by job_scope)
_children: list[subprocess.Popen] = []  # the ranks the current job started


@contextmanager
def job_scope(entry_script: str) -> Iterator[None]:
    """Runs one Hydra job of ``entry_script`` (src/train.py, src/eval.py) so that the next job in this process
    starts clean: afterwards the ranks it started have exited, its process group is destroyed, and
    ``os.environ`` is as it was before the job.

    The script is named here rather than read from ``sys.argv``: under the submitit launcher the process
    running a job is submitit's, not ours.
    """
    global _entry_script
    environ = dict(os.environ)
    _entry_script = str(Path(entry_script).resolve())
    failed = True
    try:
        yield
        failed = False
    finally:
        _end_children(failed)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
        _entry_script = None


def _end_children(failed: bool) -> None:
    """Wait for the ranks this job started: they finish with rank 0, or, if the job failed, Lightning has
    already sent them SIGKILL. One that is still there after the wait is killed."""
    deadline = time.monotonic() + (10.0 if failed else 120.0)
    for proc in _children:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _children.clear()


def job_command() -> tuple[Sequence[str], str]:
    """The command that runs another rank of the current Hydra job (each learns its rank from the environment
    Lightning gives it), and the dir to run it in."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    if _entry_script is None:
        raise UserError(
            "a job of several processes starts its ranks inside alexnet_lab.launch.job_scope(__file__): "
            "run the script's job in it, as src/train.py does"
        )
    hydra = HydraConfig.get()
    extra_dirs = [s.path for s in hydra.runtime.config_sources if s.provider == "command-line"]  # --config-dir
    command = [
        sys.executable,
        _entry_script,
        *(f"--config-dir={d}" for d in extra_dirs),
        f"--config-name={hydra.job.config_name}",
        *hydra.overrides.task,
        f'hydra.run.dir="{hydra.runtime.output_dir}"',
        "hydra.job.chdir=False",
    ]
    return command, get_original_cwd()


RANK0_PID_ENV = "ALEXNET_LAB_RANK0_PID"
POLL_S = 0.2
ERROR_WAIT_S = 5.0  # after a rank's own error, how long its watchdog looks for a dead peer to name


def _stop(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    os._exit(1)


def stop_if_a_child_died(procs: Sequence[subprocess.Popen], first_rank: int) -> None:
    """If a rank that rank 0 started has died: name it, end the others and exit 1."""
    for rank, proc in enumerate(procs, start=first_rank):
        status = proc.poll()
        if status not in (None, 0):
            for other in procs:
                if other.poll() is None:
                    other.kill()
            how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"exited with status {status}"
            _stop(f"DDP rank {rank} (pid {proc.pid}) {how}; stopping the job")


def watch_children(procs: Sequence[subprocess.Popen], first_rank: int, wait_s: float = math.inf) -> None:
    """Rank 0's watchdog, until the ranks it started have all exited: no hang in a collective that can never
    complete. After an error in rank 0, for ``wait_s``: if its cause is a dead child rank, say which, rather
    than gloo's or NCCL's connection error."""
    deadline = time.monotonic() + wait_s
    while any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
        stop_if_a_child_died(procs, first_rank)
        time.sleep(POLL_S)
    stop_if_a_child_died(procs, first_rank)


def watch_parent(rank0_pid: int, rank: int, wait_s: float = math.inf) -> None:
    """A child rank's watchdog: when rank 0, its parent, is gone, exit 1 naming it. After an error in the child
    (its collective fails at once when rank 0's socket closes, often before the next poll), for ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while os.getppid() == rank0_pid:
        if time.monotonic() > deadline:
            return
        time.sleep(POLL_S)
    _stop(f"DDP rank 0 (pid {rank0_pid}) died; rank {rank} stops")


def _daemon(target: Any, *args: Any) -> None:
    threading.Thread(target=target, args=args, daemon=True, name=target.__name__).start()


class SweepSafeDDPStrategy(compat.HookedDDPStrategy):
    """DDP whose child processes run the current Hydra job only, and end the job, naming the dead rank, when
    a rank dies (see the module doc)."""

    _rank0_pid: int | None = None  # set in a child rank that rank 0 started

    def rank_command(self, local_rank: int) -> tuple[Sequence[str], str]:
        return job_command()

    def starting_ranks(self) -> None:
        os.environ[RANK0_PID_ENV] = str(os.getpid())  # the ranks' watchdogs watch this process

    def ranks_started(self, procs: list[subprocess.Popen]) -> None:
        _children.extend(procs)
        _daemon(watch_children, list(procs), self.first_child_rank)

    @property
    def first_child_rank(self) -> int:
        assert self.cluster_environment is not None
        return self.cluster_environment.node_rank() * self.num_processes + 1

    def setup_environment(self) -> None:
        rank0_pid = os.environ.get(RANK0_PID_ENV)
        if rank0_pid and int(rank0_pid) == os.getppid():  # a rank that rank 0 started
            self._rank0_pid = int(rank0_pid)
            _daemon(watch_parent, self._rank0_pid, self.global_rank)
        super().setup_environment()

    def on_exception(self, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt | SystemExit):
            if self._rank0_pid is not None:  # a child rank
                watch_parent(self._rank0_pid, self.global_rank, wait_s=ERROR_WAIT_S)
            else:  # rank 0: a collective fails at once when a peer's socket closes
                watch_children(_children, self.first_child_rank, wait_s=ERROR_WAIT_S)
        super().on_exception(exception)


def strategy_for(devices: int, num_nodes: int) -> str | SweepSafeDDPStrategy:
    """conf/trainer/default.yaml's strategy: Lightning's choice for one process, ours for several."""
    return SweepSafeDDPStrategy() if devices * num_nodes > 1 else "auto"
