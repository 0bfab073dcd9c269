from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from alexnet_lab.files import create_once

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def ablation_groups() -> list[str]:
    """conf/'s ablation groups: the folders whose options set ``ablation.<group>`` (``# @package ablation``)."""
    return sorted(d.name for d in CONF.iterdir() if any(f.read_text().startswith("# @package ablation")
                                                        for f in d.glob("*.yaml")))  # fmt: skip


# Under pytest-xdist each worker, and each training process it starts, gets its share of the cores: torch's
# default (all cores in every process) oversubscribes them, and the default-run test then took 1.8x as long.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    THREADS = max(1, len(os.sched_getaffinity(0)) // WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
    torch.set_num_threads(THREADS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first, by each ``slow(seconds)`` mark (its duration on 2 cores): pytest-xdist's workers
    (``-n 3`` in pyproject.toml) then start the long runs early instead of finishing on one of them alone."""

    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("slow")
        return mark.args[0] if mark else 0.0

    items.sort(key=seconds, reverse=True)  # stable: the rest keep their order
    if not torch.cuda.is_available():  # pytest -m gpu: shown as skipped here, never as passed
        no_gpu = pytest.mark.skip(reason="needs a CUDA device (pytest -m gpu on a GPU machine)")
        for item in items:
            if item.get_closest_marker("gpu"):
                item.add_marker(no_gpu)


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], object]) -> Path:
    """``make(path)`` run once per pytest session, by whichever pytest-xdist worker asks first, into a folder that
    the others then share (alexnet_lab.files.create_once: the others wait for it). Only for what tests read and
    do not change. The folder is made in place, not renamed into place: runs record their own paths."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name  # this session's, not older

    def make_whole(made: Path) -> None:
        shutil.rmtree(shared, ignore_errors=True)  # what a failed attempt left
        shared.mkdir()
        make(shared)
        made.touch()

    create_once(shared.with_name(f"{name}.made"), make_whole)
    return shared


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Generated samples and their statistics, shared by the whole test session."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("ALEXNET_LAB_CACHE")
    os.environ["ALEXNET_LAB_CACHE"] = str(path)
    os.environ["WANDB_MODE"] = "offline"
    yield path
    if old is None:
        os.environ.pop("ALEXNET_LAB_CACHE", None)
    else:
        os.environ["ALEXNET_LAB_CACHE"] = old


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Iterator[Callable[..., DictConfig]]:
    """Compose a primary config from conf/ with Hydra's compose API, as a run would see it."""

    def _compose(*overrides: str, config_name: str = "train") -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path / "run")
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


def run_script(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run src/<script> the way a user does, in ``cwd``, and capture its output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run(
        [sys.executable, str(REPO / "src" / script), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def run_in_process(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run src/<script> in this process, as ``python src/<script> args...`` does (runpy, ``__main__``), and
    capture its exit status and output. Only for runs that end before they train, or train in seconds: it
    saves a process's imports (~10 s here) but shares this process's state, which is put back afterwards
    (argv, cwd, environment, logging handlers, Hydra's global state)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = sys.argv[:], os.getcwd(), dict(os.environ), logging.root.handlers[:], logging.root.level
    # Handlers that libraries made at import (Lightning's console) write to the stream that was stderr then; in a
    # process of its own they would write to its stderr: here, to the captured one.
    consoles = [handler for logger in (logging.root, *logging.Logger.manager.loggerDict.values())
                for handler in getattr(logger, "handlers", []) if type(handler) is logging.StreamHandler]  # fmt: skip
    streams = [handler.stream for handler in consoles]
    sys.argv = [str(REPO / "src" / script), *args]
    os.chdir(cwd)
    GlobalHydra.instance().clear()
    status: int | str | None = 0
    try:
        for handler in consoles:
            handler.stream = stdout if handler.stream in (sys.stdout, sys.__stdout__) else stderr
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            runpy.run_path(str(REPO / "src" / script), run_name="__main__")
    except SystemExit as exited:
        status = exited.code
    finally:
        for handler, stream in zip(consoles, streams, strict=True):
            handler.stream = stream  # (setStream would flush the captured stream's predecessor, maybe closed)
        GlobalHydra.instance().clear()
        sys.argv, cwd_before, environ, handlers, level = saved
        os.chdir(cwd_before)
        os.environ.clear()
        os.environ.update(environ)
        for added in logging.root.handlers:
            if added not in handlers:
                added.close()
        logging.root.handlers, logging.root.level = handlers, level
    code = status if isinstance(status, int) else (0 if status is None else 1)
    return subprocess.CompletedProcess(sys.argv, code, stdout.getvalue(), stderr.getvalue())
