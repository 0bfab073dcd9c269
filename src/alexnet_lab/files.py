"""Files that several processes may write at once, on one machine or on several nodes sharing a file system: each
appears whole or not at all (:func:`atomic_write`, :func:`atomic_dir`), and what several jobs need is made by one
of them while the others wait (:func:`create_once`)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from alexnet_lab.errors import UserError, disk_full

HOST = socket.gethostname()


def _temp_name(path: Path) -> Path:
    """The temp file of this process for ``path``: the host and pid make it unique across nodes."""
    return path.with_name(f".{path.name}.tmp-{HOST}.{os.getpid()}")


def _remove_abandoned(path: Path) -> None:
    """Temp files of ``path`` left by writers on this host that were killed. A live writer's temp file, or one
    of another host (whose processes cannot be checked from here), is left alone."""
    for tmp in path.parent.glob(f".{path.name}.tmp-{HOST}.*"):
        pid = tmp.name.rpartition(".")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


def atomic_write(path: str | Path, write: Callable[[Path], object], fsync: bool = False) -> None:
    """``write(tmp)`` fills a temp file beside ``path``, which is then renamed over ``path`` (atomic on POSIX
    within a directory). Temp files that killed writers on this host left behind are removed first; a write that
    fails removes its own, and a full disk or quota is one UserError naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    tmp = _temp_name(path)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if (full := disk_full(error, path)) is not None:
            raise UserError(full) from error
        raise
    if fsync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def create_once(path: str | Path, create: Callable[[Path], object]) -> Path:
    """Makes ``path`` unless it exists: ``create(path)`` runs in one process at a time, under a lock file beside
    it (``.<name>.lock``, held with ``flock``, which the kernel releases if the holder dies; README: across NFS
    and Lustre nodes too). Processes that start together wait for the first one, then find ``path`` made and do
    nothing. ``create`` must make ``path`` appear whole (:func:`atomic_write`, :func:`atomic_dir`)."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(f".{path.name}.lock")):
        if not path.exists():
            create(path)
    return path


def atomic_dir(path: str | Path, fill: Callable[[Path], object]) -> Path:
    """``fill(tmp)`` writes a folder's contents into a temp folder beside ``path``, which is then renamed to
    ``path``; on an error nothing is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        fill(tmp)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
