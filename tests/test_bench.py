"""bench/gpu.sh, the one command that measures a GPU machine, in its tiny CPU mode: so that it never rots."""

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


@pytest.mark.slow(75)
def test_the_gpu_benchmark_runs_every_section_in_its_cpu_mode(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), str(out), "--cpu"], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable})  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((out / "results.json").read_text())
    assert figures["env"]["device"] == "cpu" and figures["env"]["torch"]
    rates = [*figures["train_step"].values(), figures["overhead"]["ours images/s"], *figures["loader"].values(),
             *figures["end_to_end"]["images/s per epoch"]]  # fmt: skip
    assert len(figures["train_step"]) == 3 and len(figures["loader"]) == 2  # no compile on CPU
    assert len(figures["end_to_end"]["images/s per epoch"]) == 2, "one figure per epoch"
    assert all(isinstance(r, float) and r > 0 and math.isfinite(r) for r in rates), figures
    assert {"seed_step (per-step reseeding) us", "conv1 eager us", "conv2 eager us"} <= {
        *figures["overhead"], *figures["lrn"]}  # fmt: skip
    for line in ("train step, fp32", "overhead: plain loop", "loader: decode=gpu", "end to end: train/images_per_sec"):
        assert line in (out / "results.txt").read_text(), line
    tests = (out / "gpu_tests.txt").read_text()
    source = (REPO / "tests" / "test_gpu.py").read_text()
    gpu_tests = len(re.findall(r"^def test_", source, re.M)) + 2  # two of them run twice (parametrised)
    assert f"{gpu_tests} skipped" in tests and "passed" not in tests, "without CUDA, GPU tests are skipped, not passed"


def test_the_gpu_benchmark_without_a_gpu_names_the_cpu_mode(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), str(tmp_path)], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: no CUDA device here: run with --cpu for the tiny CPU mode"]  # fmt: skip
