"""Every script under bench/ runs, at a tiny size, so that none rots: bench/gpu.sh in its CPU mode (what a GPU
machine runs), and each script on its own. Timings are not asserted, only that each figure is there."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def bench(script: str, *args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=cwd, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow(75)
def test_the_gpu_benchmark_runs_every_section_in_its_cpu_mode(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), str(out), "--cpu"], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((out / "results.json").read_text())
    assert figures["env"]["device"] == "cpu" and figures["env"]["torch"]
    rates = [*figures["train_step"].values(), *figures["loader"].values(), *figures["end_to_end"]["images/s per epoch"]]
    assert len(figures["end_to_end"]["images/s per epoch"]) == 2, "one figure per epoch"
    assert all(isinstance(r, float) and r > 0 and math.isfinite(r) for r in rates), figures
    assert {"conv1 ours forward+backward", "conv2 ours compiled forward+backward", "conv1 compiled kernels"} <= {
        key.partition(" ")[0] + " " + key.partition(" ")[2] for key in figures["lrn"]}  # fmt: skip
    assert {"conv1 3 channels", "conv1 4 channels", "conv5 grouped", "conv5 two halves"} <= set(figures["cudnn"])
    assert (out / "profile_trace.json").stat().st_size > 0 and "Self CPU" in (out / "profile_top40.txt").read_text()
    for line in ("train step, fp32", "lrn: conv1", "cudnn: conv1, 4 channels", "loader: 2 workers",
                 "end to end: train/images_per_sec"):  # fmt: skip
        assert line in (out / "results.txt").read_text(), line
    tests = (out / "gpu_tests.txt").read_text()
    collected = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "--collect-only", "-m", "gpu",
                                str(REPO / "tests")], capture_output=True, text=True, cwd=REPO)  # fmt: skip
    gpu_tests = int(re.search(r"(\d+)/\d+ tests collected", collected.stdout)[1])  # type: ignore[index]
    assert f"{gpu_tests} skipped" in tests and "passed" not in tests, "without CUDA, GPU tests are skipped, not passed"


def test_the_gpu_benchmark_without_a_gpu_names_the_cpu_mode(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), str(tmp_path)], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: no CUDA device here: run with --cpu for the tiny CPU mode"]  # fmt: skip


@pytest.mark.slow(40)
def test_the_loader_benchmarks_run(tmp_path: Path) -> None:
    loader = bench("loader.py", "--images", "24", "--batch", "8", "--min-images", "8", "--rounds", "1", cwd=tmp_path)
    assert re.search(r"prepared vs ImageFolder: \d+\.\d+x", loader)
    parts = bench("batch_parts.py", "--batch", "8", "--rounds", "1", cwd=tmp_path)
    assert re.search(r"decode \(fast IDCT, into a reused buffer\)\s+\d+\.\d us", parts)
    decode = bench("decode.py", "--images", "4", cwd=tmp_path)
    assert re.search(r"^\s+90\s+420\s", decode, flags=re.MULTILINE) and "simplejpeg fastupsample" in decode


@pytest.mark.slow(40)
def test_the_step_and_lrn_benchmarks_run(tmp_path: Path) -> None:
    step = bench("train_step.py", "--steps", "3", "--warmup", "1", "--rounds", "1", cwd=tmp_path)
    loops = re.findall(r"^(.*?)\s+(\d+) us", step, flags=re.MULTILINE)
    assert [name for name, _ in loops] == ["plain PyTorch loop", "Lightning, a module that only computes the loss",
                                           "... under manual optimisation", "Lightning, our ClassifierModule",
                                           "... with experiment=smoke's callbacks and CSV logger"]  # fmt: skip
    lrn = bench("lrn.py", "--batch", "1", "--rounds", "1", cwd=tmp_path)
    assert re.search(r"conv2 \(256, 27, 27\): torch forward [\d.]+, .*ours compiled forward\+backward [\d.]+", lrn)
