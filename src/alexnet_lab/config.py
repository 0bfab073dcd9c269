"""The resolvers conf/ names (:data:`RESOLVERS`), which Hydra's plugin discovery registers in any process that
composes conf/ (hydra_plugins/alexnet_lab). ``gpus`` is a plain key, not a group (Hydra rejects numeric option
names), so the net's columns and the devices that follow from it are derived here (README, the table of choices).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from alexnet_lab.cluster import process_rank, slurm_task
from alexnet_lab.declare import check_value
from alexnet_lab.files import HOST

Gpus = Literal[1, 2] | None  # unset: the two-column net on one device; 1: the one-GPU baseline; 2: two devices


def columns_for(gpus: Any) -> int:  # each resolver checks its value too: compose() runs no start-up check
    return 1 if check_value("gpus", gpus, Gpus) == 1 else 2


def devices_for(gpus: Any) -> int:
    return check_value("gpus", gpus, Gpus) or 1


_claimed: dict[str, str] = {}


def claim_dir(path: str) -> str:
    """``path``, or the first free ``path_2``, ``path_3``, ..., created here with ``mkdir`` (README: a run dir
    belongs to one run); a task of a SLURM job, requeued or not, takes the dir its first rank claimed, which
    ``.slurm-<job>.<step>`` beside it names. Remembered: Hydra resolves ``hydra.run.dir`` more than once per run
    (and the resolver's ``use_cache`` keeps the value in a config that the submitit launcher pickles)."""
    if path not in _claimed:
        task = slurm_task()
        _claimed[path] = _claim_for_task(path, task) if task else _claim(path)
    return _claimed[path]


def claimed_dirs() -> set[Path]:
    """The folders this process claimed, as absolute paths."""
    return {Path(claimed).resolve() for claimed in _claimed.values()}


def _claim(path: str) -> str:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for attempt in itertools.count(1):
        candidate = path if attempt == 1 else f"{path}_{attempt}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        return candidate
    raise AssertionError("unreachable")


def _claim_for_task(path: str, task: str) -> str:
    parent = Path(path).parent
    pointer = parent / f".slurm-{task}"
    if not pointer.is_file():
        mine = _claim(path)
        tmp = pointer.with_name(f"{pointer.name}.tmp-{HOST}.{os.getpid()}")
        tmp.write_text(Path(mine).name)
        try:
            os.link(tmp, pointer)  # fails if another rank named its dir first
        except FileExistsError:
            os.rmdir(mine)
        finally:
            tmp.unlink()
    return str(parent / pointer.read_text())


def if_rank_zero(value: Any) -> Any:
    """``value`` in rank 0, null in the other ranks: they write no ``.hydra/`` of their own (rank 0's config is
    theirs), wherever they were started from (Lightning, ``srun``, torchrun)."""
    return value if process_rank() == 0 else None


def rank_suffix() -> str:
    """``_rank<N>`` in rank N > 0, for the file names of its own (``train_rank1.log``); empty in rank 0."""
    rank = process_rank()
    return f"_rank{rank}" if rank else ""


RESOLVERS: dict[str, Callable[..., Any]] = {
    "if_rank_zero": if_rank_zero,
    "rank_suffix": rank_suffix,
    "isatty": lambda: sys.stderr.isatty(),  # at each run: a progress bar on a terminal, plain lines in logs
    "columns_for": columns_for,
    "devices_for": devices_for,
    "claim_dir": claim_dir,  # registered with use_cache: a claimed dir is claimed once
}
