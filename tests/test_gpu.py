"""On a CUDA device only (``pytest -m gpu``; skipped elsewhere, see conftest.py): the paper's LRN under bf16
autocast and inductor, a training run and eval, each against the CPU or the fp32 formula. (Other files hold
GPU cases of their CPU tests, marked ``gpu``: tests/test_module.py's step that never waits for the device.)

Tolerances, and why:
- LRN in fp32 on the GPU: rtol 1e-5 forward, 1e-4 backward, against the float64 formula (fp32 pow and sums).
- LRN on bf16 maps (what autocast hands it): computed in fp32 and rounded once, so at most one bf16 step (a
  relative 2^-7) from the float64 formula; the same under inductor.
- eval on GPU vs CPU: the same checkpoint's top-1/top-5 errors within one image (a near tie may flip).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alexnet_lab.models.alexnet import PaperLRN
from conftest import run_script
from test_model import paper_lrn

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def two_columns(a: torch.Tensor) -> torch.Tensor:
    half = a.shape[1] // 2
    return torch.cat([paper_lrn(a[:, :half]), paper_lrn(a[:, half:])], dim=1)


def within_one_bf16_step(got: torch.Tensor, exact: torch.Tensor) -> bool:
    step = exact.abs() * 2**-7 + 1e-30
    return bool(((got.double().cpu() - exact).abs() <= step).all())


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "inductor"])
def test_lrn_on_the_gpu_in_fp32_and_bf16_matches_the_formula(compiled: bool) -> None:
    torch.manual_seed(0)
    a = torch.randn(4, 96, 27, 27, dtype=torch.float64) * 60
    grad = torch.randn_like(a)
    layer = PaperLRN(columns=2).to(CUDA)
    lrn = torch.compile(layer, backend="inductor") if compiled else layer
    # fp32
    exact_in = a.clone().requires_grad_()
    exact = two_columns(exact_in)
    exact.backward(grad)
    x = a.float().to(CUDA).requires_grad_()
    out = lrn(x)
    out.backward(grad.float().to(CUDA))
    torch.testing.assert_close(out.double().cpu(), exact.detach(), rtol=1e-5, atol=1e-6)
    assert x.grad is not None and exact_in.grad is not None
    torch.testing.assert_close(x.grad.double().cpu(), exact_in.grad, rtol=1e-4, atol=1e-6)
    # bf16 maps, under autocast as trainer.precision=bf16-mixed runs the net
    xb = a.to(CUDA, torch.bfloat16).requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        outb = lrn(xb)
    assert outb.dtype == torch.bfloat16
    assert within_one_bf16_step(outb, two_columns(xb.detach().double().cpu()))
    outb.float().backward(grad.float().to(CUDA))
    assert xb.grad is not None and torch.isfinite(xb.grad.float()).all()


def val_errors(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.slow(120)
def test_the_default_run_learns_on_the_gpu_as_on_the_cpu(tmp_path: Path) -> None:
    results = {}
    for accelerator in ("gpu", "cpu"):
        run_dir = tmp_path / accelerator
        # the default run; the CSV logger alone, so that wandb need not be installed on the GPU machine
        overrides = f"trainer.accelerator={accelerator}", "logger=csv", f"hydra.run.dir={run_dir}"
        result = run_script("train.py", *overrides, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-4000:]
        results[accelerator] = val_errors(run_dir)
    # README: from 0.9 (chance) to below 0.1 in 3 epochs, on either device
    assert results["gpu"]["val/top1_err"] < 0.1 and results["cpu"]["val/top1_err"] < 0.1, results


def test_eval_on_the_gpu_gives_the_cpus_errors(tmp_path: Path) -> None:
    train_dir = tmp_path / "train"
    result = run_script("train.py", "experiment=smoke", "logger=csv", f"hydra.run.dir={train_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    ckpt = train_dir / "checkpoints" / "last.ckpt"
    data = ["data.num_classes=4", "data.sample.train_per_class=8", "data.sample.val_per_class=4"]
    numbers = {}
    for accelerator in ("gpu", "cpu"):
        out = tmp_path / accelerator
        result = run_script("eval.py", f"ckpt_path={ckpt}", f"trainer.accelerator={accelerator}", *data,
                            f"hydra.run.dir={out}", cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr[-4000:]
        numbers[accelerator] = json.loads((out / "eval.json").read_text())
    for crops in ("1_crop", "10_crop"):
        gpu, cpu = numbers["gpu"][crops], numbers["cpu"][crops]
        assert gpu["images"] == cpu["images"] > 0
        for metric in ("top1_err", "top5_err"):
            assert abs(gpu[metric] - cpu[metric]) <= 1 / cpu["images"] + 1e-6, (crops, metric)


def test_each_steps_seed_reaches_the_gpus_generator() -> None:
    # dropout and the PCA lighting draw on the device: a resumed step must draw what the uninterrupted one drew
    from alexnet_lab.data.sampling import seed_step

    torch.zeros(1, device=CUDA)  # CUDA initialised, as in training
    draws = []
    for step in (5, 5, 6):
        seed_step(0, step, 0)
        draws.append(torch.rand(4, device=CUDA).cpu())
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
