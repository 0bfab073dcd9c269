"""Section 3.3's LRN on the maps the paper normalises: ours eager and compiled, against autograd through
torch.nn.LocalResponseNorm (which sums the window with avg_pool3d).

    python bench/lrn.py                                  # CPU, batch 32 (the quickstart's)
    python bench/lrn.py --device cuda --batch 128 --dtype bf16

For conv1's (96x55x55) and conv2's (256x27x27) maps of two columns, prints milliseconds per forward and per
forward + backward, the best of --rounds, and the kernels torch.compile generated for ours. Each shape is
compiled on its own (a compiled function handed a second shape compiles again, for dynamic shapes); in the
net both are one graph.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch._inductor.metrics
from torch import nn

from alexnet_lab.models.alexnet import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, PaperLRN

SHAPES = {"conv1": (96, 55, 55), "conv2": (256, 27, 27)}


def best_ms(work: Callable[[], object], device: torch.device, rounds: int) -> float:
    work()
    best = float("inf")
    for _ in range(rounds):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def timings(batch: int, device: torch.device, dtype: torch.dtype, rounds: int) -> dict[str, dict[str, float]]:
    """{shape: {"<variant> forward" | "<variant> forward+backward" | "compiled kernels": value}}."""
    found: dict[str, dict[str, float]] = {}
    for layer, shape in SHAPES.items():
        torch.manual_seed(0)
        maps = (torch.randn(batch, *shape, device=device) * 30).to(dtype).requires_grad_()
        grad = torch.randn_like(maps)
        torch._dynamo.reset()
        torch._inductor.metrics.reset()
        variants: dict[str, nn.Module | Callable[[torch.Tensor], torch.Tensor]] = {
            "torch": nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K),
            "ours": PaperLRN(columns=2),
            "ours compiled": torch.compile(PaperLRN(columns=2)),
        }
        found[layer] = {}
        for name, norm in variants.items():
            forward = best_ms(lambda: norm(maps), device, rounds)  # noqa: B023 (timed here, in this iteration)
            both = best_ms(lambda: norm(maps).backward(grad), device, rounds)  # noqa: B023
            found[layer] |= {f"{name} forward": forward, f"{name} forward+backward": both}
        found[layer]["compiled kernels"] = torch._inductor.metrics.generated_kernel_count
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"device {device}, batch {args.batch}, {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; ms, best of {args.rounds}")  # fmt: skip
    for layer, figures in timings(args.batch, device, dtype, args.rounds).items():
        kernels = int(figures.pop("compiled kernels"))
        print(f"{layer} {SHAPES[layer]}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items())
              + f"; compiled: {kernels} kernels forward and backward")  # fmt: skip


if __name__ == "__main__":
    main()
