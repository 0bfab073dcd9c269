"""The shell of the entry points (src/*.py): :func:`run` starts an entry point's ``@hydra.main`` function, so that
a mistake Hydra meets while it composes the config (an unknown key, a choice that does not exist) or launches
the jobs (SLURM refusing them) ends, like a :class:`alexnet_lab.errors.UserError`, with one line and exit status
2; ``HYDRA_FULL_ERROR=1`` shows Hydra's report."""

from __future__ import annotations

import difflib
import logging
import os
import re
import shutil
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from alexnet_lab import compat
from alexnet_lab.config import claimed_dirs
from alexnet_lab.errors import left_out

# Library notices that are not the user's concern, silenced in one place (what a run prints is the config's
# choices, the model summary, the progress, the results and its own lines):
NOTICES = [
    "💡 Tip: For seamless cloud logging",  # Lightning's advertisement for its LitLogger, at every Trainer
    "Trainer already configured with model summary callbacks",  # ours, from conf/callbacks/default.yaml
    "The `srun` command is available on your system but is not used",  # any machine with SLURM, outside a job
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning 2.6.6 on torch 2.14's _pytree
]


def run(main: Callable[[], Any]) -> None:
    """Runs ``main`` with :data:`NOTICES` silenced, as Python warnings and Lightning's log lines alike (W&B's notice
    that Lightning sets its deprecated ``anonymous`` setting: alexnet_lab.compat.without_wandb_anonymous)."""
    for text in NOTICES:
        warnings.filterwarnings("ignore", message=text)
    pattern = re.compile("|".join(NOTICES))
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not pattern.match(record.getMessage())
    )

    def explained(error: BaseException) -> str | None:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            return None
        return left_out(error) or explain(error) or scheduler_refused(error)

    with compat.hydra_errors_explained(explained):
        main()


def explain(error: BaseException) -> str | None:
    """One line for an error Hydra raises while composing the config, or None if it is not about the config."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options is not None:
        group, _, option = error.missing_cfg_file.rpartition("/")
        return f"{group}={option} is not a choice: use one of {', '.join(error.options)}"
    cause = error.__cause__ or error.__context__  # Hydra raises some with "from", some without
    if isinstance(error, ConfigCompositionException) and isinstance(cause, ConfigAttributeError | ConfigKeyError):
        key, full_key = str(cause.key), str(cause.full_key)
        parent = full_key.rpartition(".")[0]
        keys = [str(k) for k in cause.parent_node] if isinstance(cause.parent_node, DictConfig) else []
        close = difflib.get_close_matches(key, keys, n=1)
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
        return f"{full_key} is not a key{f' of {parent}' if parent else ''}: {hint}(to add one, write +{full_key}=...)"
    if isinstance(error, ConfigCompositionException | MissingConfigException):
        return " ".join(str(error).split())
    if isinstance(error, ValueError) and str(error).startswith("Config group override must be"):
        return f"{error}: a group takes the name of one of its options; ~<group> leaves it out (e.g. ~experiment)"
    return None


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
