"""Files that several processes write or choose at once: temp files, files made once, run dirs, the resume
checkpoint of a job's ranks. Each test runs real concurrent processes on a fresh folder."""

from __future__ import annotations

import errno
import json
import logging
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from alexnet_lab import resume
from alexnet_lab.cluster import job_start, process_rank, slurm_job_id, slurm_task
from alexnet_lab.config import claim_dir
from alexnet_lab.errors import UserError
from alexnet_lab.files import atomic_dir, atomic_write, create_once

fork = multiprocessing.get_context("fork")  # each child starts with this process's (empty) claims and imports


def run_all(target, args_list: list[tuple]) -> None:
    procs = [fork.Process(target=target, args=args) for args in args_list]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0


def slow_writer(path: Path, text: str, seconds: float) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text)
        time.sleep(seconds)

    atomic_write(path, write)


def test_two_writers_of_one_file_keep_each_others_temp_file(tmp_path: Path) -> None:
    """The first writer is slower: the second starts while the first's temp file exists, finishes first, and
    must leave that temp file alone (it used to delete it as stale, and the first then failed to rename it)."""
    path = tmp_path / "stats.pt"
    first = fork.Process(target=slow_writer, args=(path, "first", 1.5))
    first.start()
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob(".stats.pt.tmp-*")):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    slow_writer(path, "second", 0.0)
    first.join(30)
    assert first.exitcode == 0, "the slower writer's rename failed"
    assert path.read_text() == "first" and not list(tmp_path.glob(".stats.pt.tmp-*"))


def count_and_write(path: Path, log: Path) -> None:
    def create(target: Path) -> None:
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough for every other process to arrive while it computes
        atomic_write(target, lambda tmp: tmp.write_text("made"))

    assert create_once(path, create).read_text() == "made"


def test_a_file_made_once_by_processes_that_start_together(tmp_path: Path) -> None:
    path, log = tmp_path / "fresh" / "stats" / "sample-stats.pt", tmp_path / "log"  # under two missing folders
    run_all(count_and_write, [(path, log)] * 6)
    assert len(log.read_text().splitlines()) == 1, "computed once, the others waited and read it"


def claim_as_task(base: str, env: dict[str, str], out: Path, delay: float) -> None:
    time.sleep(delay)
    os.environ.update(env)
    out.write_text(claim_dir(f"{base}_{delay}") + "\n" + claim_dir(f"{base}_{delay}"))


def test_the_ranks_and_the_requeued_runs_of_a_slurm_job_share_one_run_dir(tmp_path: Path) -> None:
    """Each process asks at its own time (another <date_time>): the ranks of a job's step, and the same step
    after a requeue, get the dir the first one claimed; another step, and another job, get their own."""
    base = str(tmp_path / "train" / "runs" / "2026-11-30_10-00-0")
    step0 = {"SLURM_JOB_ID": "41", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0"}
    cases = [({**step0, "SLURM_PROCID": str(rank)}, delay) for rank, delay in ((0, 0.0), (1, 0.01), (1, 0.02))]
    cases += [({**step0, "SLURM_RESTART_COUNT": "1"}, 0.3)]  # requeued, later
    cases += [({**step0, "SLURM_STEP_ID": "1"}, 0.4), ({**step0, "SLURM_JOB_ID": "42"}, 0.5)]
    run_all(claim_as_task, [(base, env, tmp_path / f"{i}.txt", delay) for i, (env, delay) in enumerate(cases)])
    claimed = [(tmp_path / f"{i}.txt").read_text().split("\n") for i in range(len(cases))]
    assert all(first == second for first, second in claimed), "asked twice: the same answer"
    dirs = [first for first, _ in claimed]
    assert len(set(dirs[:4])) == 1, "one dir for the job's step, its ranks and its requeued run"
    assert len({dirs[0], dirs[4], dirs[5]}) == 3, "another step, another job: their own dirs"
    assert sorted(p.name for p in Path(base).parent.iterdir() if p.is_dir()) == sorted(Path(d).name for d in set(dirs))


@pytest.fixture
def as_rank(monkeypatch: pytest.MonkeyPatch):
    def _as(rank: int, restart: int = 0) -> None:
        for key in ("RANK", "LOCAL_RANK", resume.RANK0_CKPT_ENV):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("SLURM_JOB_ID", "77")
        monkeypatch.setenv("SLURM_STEP_ID", "0")
        monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
        monkeypatch.setenv("SLURM_PROCID", str(rank))
        monkeypatch.setenv("SLURM_RESTART_COUNT", str(restart))

    return _as


def test_the_ranks_of_an_srun_job_resume_from_the_checkpoint_rank_0_chose(
    tmp_path: Path, as_rank, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setattr(resume, "RANK0_WAIT_S", 0.5)  # a rank that waits where it should not fails, and soon
    # rank 0 chooses and says so in the run dir the ranks share
    as_rank(0, restart=1)
    asked: list[tuple[str | None, Path]] = []
    chosen = "/ckpts/chosen-by-rank-0.ckpt"
    monkeypatch.setattr(resume, "resolve_ckpt_path", lambda ckpt_path, root: asked.append((ckpt_path, root)) or chosen)
    assert resume.shared_ckpt_path("last", tmp_path, run_dir) == "/ckpts/chosen-by-rank-0.ckpt"
    assert asked == [("last", tmp_path)]
    # rank 1 takes that choice, whatever it would have found itself
    as_rank(1, restart=1)
    monkeypatch.setattr(resume, "resolve_ckpt_path", lambda ckpt_path, root: "/ckpts/elsewhere.ckpt")
    assert resume.shared_ckpt_path(None, tmp_path, run_dir) == "/ckpts/chosen-by-rank-0.ckpt"
    # after the next requeue rank 1 waits for rank 0's new choice instead of reading the earlier one
    as_rank(1, restart=2)
    with pytest.raises(resume.UserError, match="rank 0 did not choose the checkpoint to resume from"):
        resume.shared_ckpt_path(None, tmp_path, run_dir)
    (run_dir / ".ckpt_path-slurm-77.0-restart2").write_text(json.dumps(None))
    assert resume.shared_ckpt_path(None, tmp_path, run_dir) is None


@pytest.mark.parametrize("restart", [None, "", "0"], ids=["unset", "empty", "0"])
def test_a_first_start_without_ckpt_path_and_a_process_alone_choose_by_themselves(
    tmp_path: Path, as_rank, monkeypatch: pytest.MonkeyPatch, restart: str | None
) -> None:
    """Nothing to share: a rank of an srun job's first start given no ckpt_path, and a process outside any job
    given one, resolve it themselves under the outputs root, write no choice and wait for none; the answer is
    left in the environment for the ranks they start."""
    asked: list[tuple[str | None, Path]] = []
    monkeypatch.setattr(resume, "resolve_ckpt_path", lambda ckpt_path, root: asked.append((ckpt_path, root)) or None)
    monkeypatch.setattr(resume, "RANK0_WAIT_S", 0.5)  # a rank that waited for rank 0 would fail
    root, run_dir = tmp_path / "outputs", tmp_path / "run"
    run_dir.mkdir()
    as_rank(1)
    if restart is None:
        monkeypatch.delenv("SLURM_RESTART_COUNT")
    else:
        monkeypatch.setenv("SLURM_RESTART_COUNT", restart)
    assert resume.shared_ckpt_path(None, root, run_dir) is None and asked == [(None, root)]
    assert os.environ[resume.RANK0_CKPT_ENV] == "", "none chosen: the ranks it starts resume from none"
    for key in LAUNCHER_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(
        resume, "resolve_ckpt_path", lambda ckpt_path, root: asked.append((ckpt_path, root)) or "/a.ckpt"
    )
    assert resume.shared_ckpt_path("last", root, run_dir) == "/a.ckpt" and asked[1:] == [("last", root)]
    assert list(run_dir.iterdir()) == [] and os.environ[resume.RANK0_CKPT_ENV] == "/a.ckpt"


def test_ranks_that_rank_0_started_take_its_choice_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rank that rank 0 started (LOCAL_RANK > 0, rank 0's choice in the environment it inherited) takes that
    choice, none included; rank 0 itself, or a rank without the choice, resolves its own."""
    for key in LAUNCHER_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(resume, "resolve_ckpt_path", lambda ckpt_path, root: "/ckpts/own.ckpt")
    cases = [("1", "/ckpts/rank0.ckpt", "/ckpts/rank0.ckpt"), ("3", "", None),
             ("0", "/ckpts/rank0.ckpt", "/ckpts/own.ckpt"), ("1", None, "/ckpts/own.ckpt")]  # fmt: skip
    for local_rank, inherited, expected in cases:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
        if inherited is None:
            monkeypatch.delenv(resume.RANK0_CKPT_ENV, raising=False)
        else:
            monkeypatch.setenv(resume.RANK0_CKPT_ENV, inherited)
        assert resume.shared_ckpt_path("last", tmp_path, tmp_path) == expected, (local_rank, inherited)


def test_a_rank_waits_for_a_choice_that_comes_later_and_says_whose_it_is(
    tmp_path: Path, as_rank, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    as_rank(1, restart=1)
    monkeypatch.setattr(resume, "RANK0_WAIT_S", 5.0)
    choice = tmp_path / ".ckpt_path-slurm-77.0-restart1"
    late = threading.Timer(0.5, atomic_write, (choice, lambda tmp: tmp.write_text(json.dumps("/ckpts/late.ckpt"))))
    late.start()
    with caplog.at_level(logging.INFO, logger=resume.__name__):
        assert resume.shared_ckpt_path(None, tmp_path / "outputs", tmp_path) == "/ckpts/late.ckpt"
    late.join()
    assert "ckpt_path: /ckpts/late.ckpt, as rank 0 chose" in caplog.messages


def test_ckpt_path_last_is_the_run_dirs_own_or_the_newest_of_a_run_with_the_same_overrides(
    tmp_path: Path, compose_cfg, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``ckpt_path=last``: the run dir's own last.ckpt; else, under the outputs root, the newest last.ckpt of a
    run whose overrides are the same in any order, ckpt_path and trainer.max_epochs apart; else one error in a
    single run and a start from scratch in a sweep. A job that SLURM requeued looks for ``last`` by itself."""
    root = tmp_path / "outputs"

    def earlier_run(name: str, overrides: list[str], mtime: int) -> str:
        (root / name / ".hydra").mkdir(parents=True)
        (root / name / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
        ckpt = root / name / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir()
        ckpt.write_bytes(b"")
        os.utime(ckpt, (mtime, mtime))
        return str(ckpt)

    earlier_run("older", ["experiment=smoke", "norm=bn", "trainer.max_epochs=2"], 1_000)
    newest = earlier_run("newer", ["norm=bn", "experiment=smoke", "ckpt_path=/x.ckpt"], 2_000)
    earlier_run("other", ["experiment=smoke", "norm=none"], 3_000)  # the newest of all, but another job
    (root / "no-overrides" / "checkpoints").mkdir(parents=True)
    (root / "no-overrides" / "checkpoints" / "last.ckpt").write_bytes(b"")
    compose_cfg("experiment=smoke", "norm=bn", "ckpt_path=last", "trainer.max_epochs=5")
    run_dir = tmp_path / "run"  # compose_cfg's run dir
    assert resume.last_checkpoint(run_dir) is None and resume.resolve_ckpt_path("last", root) == newest
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    assert resume.resolve_ckpt_path(None, root) is None, "no ckpt_path, not requeued: a fresh start"
    for restarts in ("", "0"):
        monkeypatch.setenv("SLURM_RESTART_COUNT", restarts)
        assert resume.resolve_ckpt_path(None, root) is None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resume.resolve_ckpt_path(None, root) == newest
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    own = str(run_dir / "checkpoints" / "last.ckpt")
    assert resume.last_checkpoint(run_dir) == own and resume.resolve_ckpt_path("last", root) == own
    os.remove(own)
    cfg = compose_cfg("experiment=smoke", "norm=lrn", "ckpt_path=last")  # no run of these overrides saved
    with pytest.raises(resume.UserError, match=r"ckpt_path=last: no earlier run under .* with the overrides "
                       r"\['experiment=smoke', 'norm=lrn'\] has a last.ckpt"):  # fmt: skip
        resume.resolve_ckpt_path("last", root)
    with caplog.at_level(logging.INFO, logger="alexnet_lab"):
        assert resume.resolve_ckpt_path(None, root) is None, "a requeued job without a checkpoint starts afresh"
    assert caplog.messages[-1] == "requeued job without a last.ckpt: starting from scratch"
    OmegaConf.set_readonly(cfg.hydra, False)
    cfg.hydra.mode = RunMode.MULTIRUN
    resume.HydraConfig.instance().set_config(cfg)
    with caplog.at_level(logging.INFO, logger="alexnet_lab"):
        assert resume.resolve_ckpt_path("last", root) is None, "a job of a resumed sweep that had not saved yet"
    assert caplog.messages[-1] == "ckpt_path=last: this job of the sweep has no last.ckpt yet: starting it from scratch"


def test_a_ckpt_path_that_is_a_folder_or_nothing_is_refused_naming_a_checkpoint_inside(tmp_path: Path) -> None:
    """A run dir given as ckpt_path names its checkpoints/last.ckpt, a checkpoints folder its last.ckpt, another
    folder no file; a path where nothing is says so."""
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        run: f"is a folder, not a checkpoint: give a .ckpt file such as {last}",
        last.parent: f"is a folder, not a checkpoint: give a .ckpt file such as {last}",
        empty: "is a folder, not a checkpoint: give a .ckpt file",
        tmp_path / "nowhere.ckpt": "does not exist: give a checkpoint file or ckpt_path=last",
    }
    for path, says in cases.items():
        with pytest.raises(resume.UserError) as error:
            resume.resolve_ckpt_path(str(path), tmp_path)
        assert str(error.value) == f"ckpt_path={path} {says}"


LAUNCHER_KEYS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_PROCID", "SLURM_STEP_ID",
                 "SLURM_STEP_NUM_TASKS", "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT",
                 "WORLD_SIZE", "RANK", "LOCAL_RANK")  # fmt: skip


@pytest.mark.parametrize(
    ("environment", "start"),
    [
        ({}, None),
        ({"SLURM_JOB_ID": "7", "SLURM_PROCID": "1", "SLURM_STEP_ID": "3", "SLURM_STEP_NUM_TASKS": "2"},
         "slurm-7.3-restart0"),
        ({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_STEP_ID": "3", "SLURM_STEP_NUM_TASKS": "2",
          "SLURM_RESTART_COUNT": "1"}, "slurm-7.3-restart1"),
        ({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1"}, None),  # one task
        ({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0"}, None),  # a batch script: no step's task count
        ({"TORCHELASTIC_RUN_ID": "abc", "WORLD_SIZE": "2"}, "torchrun-abc-restart0"),
        ({"TORCHELASTIC_RUN_ID": "abc", "WORLD_SIZE": "2", "TORCHELASTIC_RESTART_COUNT": "2"}, "torchrun-abc-restart2"),
        ({"TORCHELASTIC_RUN_ID": "abc", "WORLD_SIZE": "1"}, None),  # one process
        ({"TORCHELASTIC_RUN_ID": "abc"}, None),  # no world size: one process
    ],
    ids=["alone", "srun", "srun-requeued", "one-task", "batch", "torchrun", "torchrun-restarted", "torchrun-one",
         "torchrun-no-size"],
)  # fmt: skip
def test_the_ranks_of_one_start_of_a_job_share_a_name_that_a_restart_changes(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], start: str | None
) -> None:
    for key in LAUNCHER_KEYS:
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert job_start() == start


@pytest.mark.parametrize(
    ("environment", "job", "task", "rank"),
    [
        ({}, None, None, 0),
        ({"SLURM_JOB_ID": "7"}, "7", None, 0),  # an salloc shell: in the job, but no task
        ({"SLURM_PROCID": "0"}, None, None, 0),  # no job: no task
        ({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0"}, "7", "7.batch", 0),  # the batch script
        ({"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "3", "SLURM_PROCID": "2",
          "SLURM_STEP_ID": "0"}, "7_3", "7_3.0", 2),  # task 2 of srun's step 0 in array task 3 of job 7
        ({"RANK": "3", "LOCAL_RANK": "1", "SLURM_JOB_ID": "7", "SLURM_PROCID": "0"}, "7", "7.batch", 3),  # torchrun
        ({"RANK": "0", "SLURM_PROCID": "1"}, None, None, 0),  # torchrun's RANK first, 0 too
        ({"RANK": "", "SLURM_PROCID": "1"}, None, None, 1),
        ({"LOCAL_RANK": "1", "SLURM_JOB_ID": "7", "SLURM_PROCID": "0"}, "7", "7.batch", 1),  # a rank Lightning started
        ({"LOCAL_RANK": "0", "SLURM_PROCID": "2"}, None, None, 2),
    ],
    ids=["alone", "salloc", "no-job", "batch", "array-srun", "torchrun", "torchrun-0", "empty-rank", "started",
         "srun-local-0"],
)  # fmt: skip
def test_the_job_the_task_and_the_rank_are_read_as_each_launcher_sets_them(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], job: str | None, task: str | None, rank: int
) -> None:
    """What scontrol calls the job (``<array job>_<task>`` for an array), the task (``<job>.<step>``, ``.batch``
    in the batch script, none in an salloc shell) and the global rank (torchrun's RANK, then a started rank's
    LOCAL_RANK, then srun's SLURM_PROCID), for the variables each launcher sets (sbatch, srun, torchrun)."""
    for key in LAUNCHER_KEYS:
        monkeypatch.delenv(key, raising=False)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    assert (slurm_job_id(), slurm_task(), process_rank()) == (job, task, rank)


def test_only_this_hosts_temp_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    """On a file system that several hosts share: a temp file is removed only if its name says this host and
    its writer's pid is not alive here; another host's (whose processes this one cannot see) stays, and so does
    a live writer's."""
    path, host = tmp_path / "stats.pt", socket.gethostname()
    dead = [subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip() for _ in range(5)]
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    files = {
        **{f"dead writer here {i}": tmp_path / f".stats.pt.tmp-{host}.{pid}" for i, pid in enumerate(dead)},
        "live writer here": tmp_path / f".stats.pt.tmp-{host}.{live.pid}",
        "dead pid, other host": tmp_path / f".stats.pt.tmp-another-node.{dead[0]}",
        "another file's": tmp_path / f".other.pt.tmp-{host}.{dead[0]}",
        # names of this host's pattern without a pid: not ours, and the dead writers' files after them still go
        **{f"no pid {i}": tmp_path / f".stats.pt.tmp-{host}.x{i}" for i in range(5)},
    }
    for file in files.values():
        file.write_text("half")
    try:
        atomic_write(path, lambda tmp: tmp.write_text("whole"))
        with pytest.raises(subprocess.TimeoutExpired):  # the live writer itself is left alone: no signal ends it
            live.wait(timeout=0.5)
    finally:
        live.kill()
        live.wait()
    assert path.read_text() == "whole"
    assert {name for name, file in files.items() if file.exists()} == {
        "live writer here", "dead pid, other host", "another file's", *(f"no pid {i}" for i in range(5))}  # fmt: skip


def full_disk(tmp: Path) -> None:
    tmp.write_bytes(b"half")
    raise RuntimeError("unexpected pos 64") from OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as torch.save


def quota(tmp: Path) -> None:
    raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))


def fails_first(tmp: Path) -> None:
    raise ValueError("not writable")


@pytest.mark.parametrize("write", [full_disk, quota, fails_first])
def test_a_write_that_fails_leaves_nothing_and_a_full_disk_or_quota_is_one_line_naming_the_file(
    tmp_path: Path, write: Callable[[Path], None]
) -> None:
    """Under folders that do not exist yet: a write that fails leaves neither the file nor its temp file; a full
    disk or an exceeded quota (the OSError, or the cause of another error) is a UserError naming the path and the
    cause; any other error is the write's own (not one from removing a temp file it never made)."""
    path = tmp_path / "new" / "run" / "summary.json"
    lines = {
        full_disk: f"cannot write {path}: No space left on device: free space there (or raise the quota), or set "
        "paths.log_dir",
        quota: f"cannot write {path}: Disk quota exceeded: free space there (or raise the quota), or set paths.log_dir",
    }
    with pytest.raises((UserError, ValueError)) as error:
        atomic_write(path, write)
    assert (type(error.value), str(error.value)) == (
        (UserError, lines[write]) if write in lines else (ValueError, "not writable")
    )
    assert list(path.parent.iterdir()) == []


def test_a_dead_writers_file_that_another_cleaner_removed_first_is_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two jobs clean up at once: the other removes a dead writer's temp file between this one's listing and its
    removal (here, while this one checks the pid); the write goes on."""
    abandoned = tmp_path / f".stats.pt.tmp-{socket.gethostname()}.999999"
    abandoned.write_text("half")

    def the_other_cleaner_first(pid: int, sig: int) -> None:
        abandoned.unlink()
        raise ProcessLookupError

    monkeypatch.setattr(os, "kill", the_other_cleaner_first)
    atomic_write(tmp_path / "stats.pt", lambda tmp: tmp.write_text("whole"))
    assert (tmp_path / "stats.pt").read_text() == "whole" and not abandoned.exists()


def test_a_folder_appears_whole_under_missing_parents_or_not_at_all(tmp_path: Path) -> None:
    """atomic_dir: the folder is filled under a hidden temp name (a reader listing the parent sees nothing
    half-made), its missing parents are made, and a fill that fails leaves nothing behind and raises."""
    target = tmp_path / "a" / "b" / "sample"

    def fill(folder: Path) -> None:
        assert [p.name for p in target.parent.iterdir() if not p.name.startswith(".")] == []
        assert folder.parent == target.parent and folder.name.startswith(".sample.tmp-")
        (folder / "x.txt").write_text("whole")

    assert atomic_dir(target, fill) == target
    assert (target / "x.txt").read_text() == "whole"
    assert sorted(p.name for p in target.parent.iterdir()) == ["sample"]

    def fail(folder: Path) -> None:
        (folder / "half.txt").write_text("half")
        raise OSError("the disk is full")

    with pytest.raises(OSError, match="the disk is full"):
        atomic_dir(tmp_path / "c" / "other", fail)
    assert list((tmp_path / "c").iterdir()) == []
    # a fill that fails after its folder is gone (removed by hand, a full disk's cleanup): its own error still
    # reaches the user, not the cleanup's

    def vanish(folder: Path) -> None:
        folder.rmdir()
        raise OSError("the disk is full")

    with pytest.raises(OSError, match="the disk is full"):
        atomic_dir(tmp_path / "c" / "third", vanish)
