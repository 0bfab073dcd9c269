"""Section 3.3's LRN: ``PaperLRN`` (hand-written gradient) against autograd through torch.nn.LocalResponseNorm.

    python bench/lrn.py                  # CPU, batch 32 (the quickstart's)
    python bench/lrn.py --device cuda --batch 128

On the maps the paper normalises (conv1: 96x55x55, conv2: 256x27x27), it prints milliseconds per forward and
per forward + backward, the best of --rounds, and the speed-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from alexnet_lab.models.alexnet import LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, PaperLRN  # noqa: E402


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    reference = nn.LocalResponseNorm(LRN_SIZE, alpha=LRN_ALPHA * LRN_SIZE, beta=LRN_BETA, k=LRN_K)
    print(f"device {device}, batch {args.batch}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for layer, shape in (("conv1", (96, 55, 55)), ("conv2", (256, 27, 27))):
        torch.manual_seed(0)
        maps = (torch.randn(args.batch, *shape, device=device) * 30).requires_grad_()
        grad = torch.randn_like(maps)
        times = {}
        for name, norm in (("torch", reference), ("ours", PaperLRN())):
            times[name] = (
                best_ms(lambda norm=norm, x=maps: norm(x), device, args.rounds),
                best_ms(lambda norm=norm, x=maps, g=grad: norm(x).backward(g), device, args.rounds),
            )
        (tf, tb), (of, ob) = times["torch"], times["ours"]
        print(f"{layer}: forward torch {tf:.1f} ms, ours {of:.1f} ms ({tf / of:.2f}x); "
              f"forward+backward torch {tb:.1f} ms, ours {ob:.1f} ms ({tb / ob:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
