"""A user's mistake ends a run with one line that names the cause and the fix, and exit status 2, not a
traceback: :class:`UserError` says it, :func:`user_errors` prints it (alexnet_lab.cli, for Hydra's errors)."""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hydra.errors import ConfigCompositionException
from omegaconf.errors import InterpolationResolutionError, OmegaConfBaseException


class UserError(ValueError):
    """An error in a value the user gave, whose message names the cause and the fix."""


def _lightning_refused(error: BaseException) -> str | None:
    """Lightning refusing what it was asked for, in its own words on one line; about devices, with where ours
    are chosen. (Lightning is looked at only if this process has imported it.)"""
    exceptions = sys.modules.get("lightning.fabric.utilities.exceptions")
    if exceptions is None or not isinstance(error, exceptions.MisconfigurationException):
        return None
    text = " ".join(str(error).split())
    about_devices = re.search(r"gpu|cuda|mps|tpu|device|accelerator", text, re.IGNORECASE)
    hint = " (gpus=, trainer.accelerator= and trainer.devices= choose the devices)" if about_devices else ""
    return f"Lightning refused the settings: {text}{hint}"


def disk_full(error: BaseException, path: object = None) -> str | None:
    """One line for a write that failed because the disk is full or the quota exceeded, or None."""
    cause: BaseException | None = error
    while cause is not None and not (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)):
        cause = cause.__cause__ or cause.__context__
    if not isinstance(cause, OSError):
        return None
    where = path or cause.filename or "a file of the run"
    return f"cannot write {where}: {cause.strerror}: free space there (or raise the quota), or set paths.log_dir"


def _message(error: BaseException) -> str | None:
    """The one line for ``error`` or one of its causes (Hydra's instantiate wraps errors ``from e``); OmegaConf
    drops the cause of a resolver's error, so its text is used instead."""
    cause: BaseException | None = error
    while cause is not None:
        if (group := left_out(cause)) is not None:
            return group
        if isinstance(cause, UserError):
            return str(cause)
        if isinstance(cause, InterpolationResolutionError):
            text = str(cause).splitlines()[0]
            return text.partition("while resolving interpolation: ")[2] or text
        if (refused := _lightning_refused(cause)) is not None:
            return refused
        if (full := disk_full(cause)) is not None:
            return full
        cause = cause.__cause__
    return None


def left_out(error: BaseException) -> str | None:
    """One line for an error about a key of a group that the command line leaves out (``~trainer``, ``~norm``) but
    the config or the run still reads, or None."""
    groups = [arg[1:].partition("=")[0] for arg in sys.argv[1:] if arg.startswith("~")]
    chain = (error, error.__context__)  # (Hydra raises some errors of composition with no cause)
    text = " ".join(str(e) for e in chain if isinstance(e, OmegaConfBaseException | ConfigCompositionException))
    if (group := next((g for g in groups if re.search(rf"(?<![\w/]){re.escape(g)}\b", text)), None)) is None:
        return None
    return f"~{group} leaves out {group}, which this run reads: put it back, or choose one of its options ({group}=...)"


@contextmanager
def user_errors(explain: Callable[[BaseException], str | None] = _message) -> Iterator[None]:
    """Runs the block; a user's mistake raised in it (one that ``explain`` puts in a line) ends the process with
    that line and exit status 2."""
    try:
        yield
    except Exception as error:
        message = explain(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
