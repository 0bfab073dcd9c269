"""On a real SLURM cluster (tools/slurm-local.sh starts a one-node one): the README's submitit sweep, and
examples/slurm/train.sbatch under srun with two tasks, the time-limit warning, SIGUSR1, and scancel.

Skipped, with the reason, where no cluster answers; CI starts one and sets ALEXNET_LAB_REQUIRE_SLURM=1,
which turns that skip into a failure."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alexnet_lab.resume import checkpoint_facts
from conftest import REPO, run_script

TESTS = Path(__file__).resolve().parent
SBATCH = REPO / "examples" / "slurm" / "train.sbatch"
# deterministic kernels, so that runs on and off the cluster can be compared bitwise
RUN = ["experiment=smoke", "logger=csv", "trainer.deterministic=true"]
TERMINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


def cluster_answers() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


if not cluster_answers():
    if os.environ.get("ALEXNET_LAB_REQUIRE_SLURM") == "1":
        raise RuntimeError("ALEXNET_LAB_REQUIRE_SLURM=1 but no SLURM cluster answers: bash tools/slurm-local.sh start")
    pytestmark = pytest.mark.skip(reason="no SLURM cluster answers (bash tools/slurm-local.sh start runs one)")
else:
    pytestmark = pytest.mark.slurm


def env(tmp_path: Path) -> dict[str, str]:
    """The job's environment (sbatch exports the submitter's): tests/ for the faults, outputs in tmp_path."""
    full = {**os.environ, "PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": "1",
            "ALEXNET_LAB_OUTPUTS": str(tmp_path / "outputs")}  # fmt: skip
    full.pop("PYTEST_CURRENT_TEST", None)
    return full


def slow(tmp_path: Path, seconds: float) -> list[str]:
    return ["+callbacks.slow._target_=faults.SlowSteps", f"+callbacks.slow.seconds={seconds}",
            f"+callbacks.slow.progress={tmp_path / 'progress'}"]  # fmt: skip


def sbatch(tmp_path: Path, *args: str, options: tuple[str, ...] = ()) -> str:
    """Submits examples/slurm/train.sbatch from the repository's root, as its comment says; its log goes to
    tmp_path/job.out."""
    result = subprocess.run(["sbatch", "--parsable", f"--output={tmp_path / 'job.out'}", *options, str(SBATCH), *args],
                            cwd=REPO, env=env(tmp_path), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def job_field(job: str, name: str) -> str:
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30).stdout
    found = re.search(rf"\b{name}=(\S+)", shown)
    assert found, shown
    return found[1]


def wait_for_end(job: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (state := job_field(job, "JobState")) not in TERMINAL:
        if time.monotonic() > deadline:
            subprocess.run(["scancel", job])
            pytest.fail(f"job {job} still {state} after {timeout:.0f} s")
        time.sleep(1)
    return state


def wait_for_step(tmp_path: Path, step: int, job: str, timeout: float = 180) -> None:
    """Until rank 0 of the job has trained ``step`` steps (tests/faults.py: SlowSteps)."""
    deadline = time.monotonic() + timeout
    progress = tmp_path / "progress"
    while not (progress.is_file() and progress.read_text() and int(progress.read_text()) >= step):
        assert job_field(job, "JobState") not in TERMINAL, (tmp_path / "job.out").read_text()[-3000:]
        assert time.monotonic() < deadline, f"job {job} did not reach step {step} in {timeout:.0f} s"
        time.sleep(0.2)


def run_dir(tmp_path: Path) -> Path:
    """The job's run dir: the only one under outputs/train/runs."""
    runs = [p for p in (tmp_path / "outputs" / "train" / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, f"one run dir per job: {runs}"
    return runs[0]


def straight(tmp_path: Path, *args: str) -> Path:
    """The same run on this machine, uninterrupted, without SLURM."""
    out = tmp_path / "straight"
    environment = {k: v for k, v in env(tmp_path).items() if not k.startswith("SLURM_")}
    result = subprocess.run([sys.executable, str(REPO / "src" / "train.py"), *RUN, *args, f"hydra.run.dir={out}"],
                            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def assert_same_training(a: Path, b: Path) -> None:
    """Weights, momentum and lr schedule of the two runs' last.ckpt bitwise equal; each step logged once."""
    first, second = (torch.load(d / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True) for d in (a, b))
    assert first["global_step"] == second["global_step"]
    for key, tensor in first["state_dict"].items():
        assert torch.equal(tensor, second["state_dict"][key]), key
    for key, state in first["optimizer_states"][0]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, second["optimizer_states"][0]["state"][key][name]), (key, name)
    assert first["lr_schedulers"] == second["lr_schedulers"]
    for run in (a, b):
        with open(run / "csv" / "metrics.csv", newline="") as f:
            steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss_step")]
        assert steps == list(range(first["global_step"])), f"{run}: each training step once in one metrics.csv"


@pytest.mark.slow(90)
def test_the_readmes_submitit_sweep_runs_two_jobs_and_writes_the_report(tmp_path: Path) -> None:
    """The README's command, two tasks a job with gpus=2 (on CPUs: the cluster has no GPU to ask for), for two
    seeds: each job's two ranks train together under srun, in one run dir, and the sweep writes its report."""
    sweep = tmp_path / "sweep"
    result = run_script("train.py", "-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug",
                        "hydra.launcher.tasks_per_node=2", "gpus=2", *RUN, "seed=0,1", f"hydra.sweep.dir={sweep}",
                        cwd=tmp_path, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = (sweep / "report.md").read_text()
    assert [line.split("|")[2].strip() for line in report.splitlines() if re.match(r"\| \d \|", line)] == [
        "seed=0", "seed=1"]  # fmt: skip
    for job in ("0", "1"):
        # the smoke preset: 4 classes x 8 training images, a global batch of 8 over two ranks, 2 epochs
        assert checkpoint_facts(sweep / job / "checkpoints" / "last.ckpt").global_step == 8
        assert (sweep / job / "train.log").is_file() and (sweep / job / "train_rank1.log").is_file()


@pytest.mark.slow(80)
def test_a_two_task_ddp_job_under_srun_equals_a_local_two_process_run(tmp_path: Path) -> None:
    job = sbatch(tmp_path, "gpus=2", *RUN, options=("--ntasks-per-node=2",))
    assert wait_for_end(job, 300) == "COMPLETED", (tmp_path / "job.out").read_text()[-3000:]
    run = run_dir(tmp_path)
    assert (run / "train.log").is_file() and (run / "train_rank1.log").is_file(), "both ranks log in one dir"
    assert (run / ".hydra" / "overrides.yaml").is_file()
    assert_same_training(run, straight(tmp_path, "gpus=2"))


@pytest.mark.slow(100)
def test_usr1_saves_requeues_and_the_job_resumes_in_its_run_dir(tmp_path: Path) -> None:
    args = [*RUN, "trainer.max_epochs=3"]
    job = sbatch(tmp_path, *args, *slow(tmp_path, 1.0))
    wait_for_step(tmp_path, 3, job)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    assert wait_for_end(job, 300) == "COMPLETED", (tmp_path / "job.out").read_text()[-3000:]
    log = (tmp_path / "job.out").read_text()
    assert re.search(r"SIGUSR1 received: saved \S+last.ckpt at step [3-9]", log), log[-3000:]
    assert f"scontrol requeue {job}: done" in log
    assert job_field(job, "Restarts") == "1"
    assert_same_training(run_dir(tmp_path), straight(tmp_path, *args))


@pytest.mark.slow(60)
def test_scancel_saves_and_the_job_stays_cancelled(tmp_path: Path) -> None:
    job = sbatch(tmp_path, *RUN, "trainer.max_epochs=20", *slow(tmp_path, 1.0))
    wait_for_step(tmp_path, 2, job)
    subprocess.run(["scancel", job], check=True)
    assert wait_for_end(job, 120) == "CANCELLED"
    time.sleep(15)  # longer than a requeued job's wait (tools/slurm-local.sh: cred_expire=10)
    assert job_field(job, "JobState") == "CANCELLED" and job_field(job, "Restarts") == "0"
    log = (tmp_path / "job.out").read_text()
    assert re.search(r"SIGTERM received: saved \S+last.ckpt at step \d+", log), log[-3000:]
    assert "scontrol requeue" not in log
    assert checkpoint_facts(run_dir(tmp_path) / "checkpoints" / "last.ckpt").global_step >= 2


@pytest.mark.slow(240)
def test_the_time_limit_warning_requeues_and_the_job_finishes(tmp_path: Path) -> None:
    # 24 steps of 4 s: longer than the first allocation, which SLURM warns within 60 s of its 2-minute limit
    # (its events come every 30 s or so, so the warning arrives 60 to 90 s after the start)
    args = [*RUN, "trainer.max_epochs=6"]
    job = sbatch(tmp_path, *args, *slow(tmp_path, 4.0), options=("--time=2", "--signal=USR1@60"))
    assert wait_for_end(job, 600) == "COMPLETED", (tmp_path / "job.out").read_text()[-3000:]
    log = (tmp_path / "job.out").read_text()
    assert "SIGUSR1 received: saved" in log and f"scontrol requeue {job}: done" in log
    assert int(job_field(job, "Restarts")) >= 1
    run = run_dir(tmp_path)
    assert checkpoint_facts(run / "checkpoints" / "last.ckpt").global_step == 24
    assert_same_training(run, straight(tmp_path, *args))


@pytest.mark.slow(50)
@pytest.mark.parametrize("signal", ["SIGUSR1", "SIGUSR2"])
def test_a_requeue_signal_during_the_final_validation_leaves_the_job_to_finish(tmp_path: Path, signal: str) -> None:
    """Lightning's own SLURM handler would requeue the job on SIGUSR1 in validate(): it is off
    (alexnet_lab.resume.trainer_plugins), and after fit Preemption ignores a requeue signal. The job completes
    once, with its summary."""
    fault = ["+callbacks.fault._target_=faults.SignalAtStep", f"+callbacks.fault.signal={signal}",
             "+callbacks.fault.during=final"]  # fmt: skip
    job = sbatch(tmp_path, *RUN, *fault)
    assert wait_for_end(job, 300) == "COMPLETED", (tmp_path / "job.out").read_text()[-3000:]
    time.sleep(12)  # longer than a requeued job's wait (tools/slurm-local.sh: cred_expire=10)
    log = (tmp_path / "job.out").read_text()
    assert job_field(job, "JobState") == "COMPLETED" and job_field(job, "Restarts") == "0", log[-3000:]
    assert "auto-requeue" not in log and "scontrol requeue" not in log
    assert (run_dir(tmp_path) / "summary.json").is_file()


def test_sbatch_refusing_the_jobs_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    result = run_script("train.py", "-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=nowhere", *RUN,
                        "seed=0,1", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: SLURM refused the jobs: invalid partition specified: nowhere; Batch job submission "
                      "failed: Invalid partition name specified: check the hydra.launcher settings (partition, "
                      "account, timeout_min, ...)"]  # fmt: skip
    sweeps = tmp_path / "outputs" / "train" / "multiruns"
    assert not sweeps.exists() or not list(sweeps.iterdir()), "no sweep dir, multirun.yaml or submission files"
    shutil.rmtree(tmp_path / "outputs", ignore_errors=True)
