"""What a process's launcher says about it, read from the environment each launcher sets before the process
starts: its rank (torchrun, ``srun``, or a rank that Lightning started), its SLURM job, and the start of the
job it belongs to."""

from __future__ import annotations

import os


def slurm_job_id() -> str | None:
    """The SLURM job this process runs in (``<job>`` or ``<array job>_<task>``), as ``scontrol`` names it."""
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array is not None:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def slurm_task() -> str | None:
    """``<job>.<step>`` for a task of a SLURM job (``<job>.batch`` in its batch script); None outside one, and
    in an ``salloc`` shell, which is no task. A requeued job runs its steps again under the same names."""
    job = slurm_job_id()
    if job is None or "SLURM_PROCID" not in os.environ:
        return None
    return f"{job}.{os.environ.get('SLURM_STEP_ID', 'batch')}"


def process_rank() -> int:
    """This process's global rank: ``RANK`` (torchrun), ``LOCAL_RANK`` > 0 (a rank that Lightning started, not
    rank 0 whatever its node), ``SLURM_PROCID`` (``srun``; 0 in a batch script); 0 for a process alone."""
    if os.environ.get("RANK"):
        return int(os.environ["RANK"])
    if int(os.environ.get("LOCAL_RANK") or 0) > 0:
        return int(os.environ["LOCAL_RANK"])
    return int(os.environ.get("SLURM_PROCID") or 0)


def job_start() -> str | None:
    """A name that the ranks of one start of a multi-process job share, and a restart of it does not: the
    ``srun`` step with its SLURM restart count, or torchrun's run id with its restart count. None for a
    process alone or under a launcher that gives none."""
    task = slurm_task()
    if task is not None and int(os.environ.get("SLURM_STEP_NUM_TASKS") or 1) > 1:
        return f"slurm-{task}-restart{os.environ.get('SLURM_RESTART_COUNT') or 0}"
    if os.environ.get("TORCHELASTIC_RUN_ID") and int(os.environ.get("WORLD_SIZE") or 1) > 1:
        return f"torchrun-{os.environ['TORCHELASTIC_RUN_ID']}-restart{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}"
    return None
