"""Training-step throughput of the paper's net (two columns, LRN, batch 128 unless --batch).

    python bench/train_step.py                      # CPU: our LightningModule + Trainer vs a plain PyTorch loop
    python bench/train_step.py --device cuda        # GPU: fp32, bf16-mixed, channels_last, torch.compile
    python bench/train_step.py --device cuda --prepared DIR   # ... and end to end from prepared shards

Synthetic batches are made once, on the device, so the figures measure the step alone. Prints images/s for
each variant; on CPU also the Lightning overhead in percent.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import alexnet_lab  # noqa: E402,F401  (registers the strategy)
from alexnet_lab.models.alexnet import PAPER_INPUT_SIZE  # noqa: E402
from alexnet_lab.module import ClassifierModule  # noqa: E402

ALEXNET = {"_target_": "alexnet_lab.models.AlexNet", "num_classes": 1000}
RECIPE = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "lr_factor": 0.1, "lr_drops": 3, "schedule": "step"}


class Batches(Dataset):
    """The same few batches, over and over (``batch_size=None`` in the loader: items are whole batches)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]], steps: int) -> None:
        self.batches, self.steps = batches, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batches[i % len(self.batches)]


def synthetic(batch: int, device: str, n: int = 4) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"image": (torch.rand(batch, 3, PAPER_INPUT_SIZE, PAPER_INPUT_SIZE, generator=g) * 255 - 120).to(device),
             "label": torch.randint(0, 1000, (batch,), generator=g).to(device)} for _ in range(n)]  # fmt: skip


class Timer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.images = warmup, 0.0, 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        if batch_idx + 1 == self.warmup:
            _sync(pl_module.device)
            self.start = time.perf_counter()
        elif batch_idx + 1 > self.warmup:
            self.images += int(batch["label"].numel())

    def rate(self, device: torch.device) -> float:
        _sync(device)
        return self.images / (time.perf_counter() - self.start)


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def lightning_rate(args: argparse.Namespace, batches: list[dict[str, torch.Tensor]], precision: str = "32-true",
                   channels_last: bool = False, compile: bool = False, loader: Any = None,
                   net: dict[str, Any] | None = None) -> float:  # fmt: skip
    model = ClassifierModule({**ALEXNET, **(net or {})}, **RECIPE, channels_last=channels_last,
                             compile=compile)  # fmt: skip
    timer = Timer(args.warmup)
    trainer = L.Trainer(accelerator=args.device if args.device != "cuda" else "gpu", devices=1,
                        max_steps=args.warmup + args.steps, precision=precision, logger=False,  # type: ignore[arg-type]
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, callbacks=[timer])  # fmt: skip
    if loader is None:
        loader = DataLoader(Batches(batches, args.warmup + args.steps), batch_size=None)
        trainer.fit(model, train_dataloaders=loader)
    else:
        trainer.fit(model, datamodule=loader)
    return timer.rate(model.device)


def plain_rate(args: argparse.Namespace, batches: list[dict[str, torch.Tensor]], precision: str = "32-true",
               channels_last: bool = False, net: dict[str, Any] | None = None) -> float:  # fmt: skip
    """The same model, optimiser and batches in a hand-written loop (bf16 autocast for ``bf16-mixed``)."""
    module = ClassifierModule({**ALEXNET, **(net or {})}, **RECIPE)
    model = module.net.to(args.device)
    opt = module.configure_optimizers()["optimizer"]  # the module's own optimiser over the same parameters
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    autocast = torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    images, start = 0, 0.0
    for i in range(args.warmup + args.steps):
        batch = batches[i % len(batches)]
        opt.zero_grad()
        with autocast:
            loss = F.cross_entropy(model(batch["image"].contiguous(memory_format=layout)), batch["label"])
        loss.backward()
        opt.step()
        if i + 1 == args.warmup:
            _sync(args.device)
            start = time.perf_counter()
        elif i + 1 > args.warmup:
            images += batch["label"].numel()
    _sync(args.device)
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=None, help="default: 128 on cuda, 16 on cpu")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 200 cuda, 6 cpu)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 30 cuda, 2 cpu)")
    parser.add_argument("--repeats", type=int, default=2, help="CPU: alternate ours/plain this many times")
    parser.add_argument("--prepared", type=Path, help="cuda: also train end to end from these shards")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    args.batch = args.batch or (128 if cuda else 16)
    args.steps = args.steps or (200 if cuda else 6)
    args.warmup = args.warmup or (30 if cuda else 2)
    batches = synthetic(args.batch, args.device)
    where = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}; torch {torch.__version__}, lightning {L.__version__}; batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup}")  # fmt: skip
    if not cuda:
        ours, plain = [], []
        for _ in range(args.repeats):
            plain.append(plain_rate(args, batches))
            ours.append(lightning_rate(args, batches))
        best_ours, best_plain = max(ours), max(plain)
        print(f"plain PyTorch loop     {best_plain:9.2f} images/s")
        print(f"ours (Lightning)       {best_ours:9.2f} images/s")
        print(f"Lightning overhead: {100 * (best_plain / best_ours - 1):.1f}%")
        return
    torch.backends.cudnn.benchmark = True
    variants = [("fp32", {}), ("bf16-mixed", {"precision": "bf16-mixed"}),
                ("bf16-mixed + channels_last", {"precision": "bf16-mixed", "channels_last": True}),
                ("bf16-mixed + channels_last + compile",
                 {"precision": "bf16-mixed", "channels_last": True, "compile": True})]  # fmt: skip
    for name, options in variants:
        print(f"{name:<40} {lightning_rate(args, batches, **options):10.0f} images/s (synthetic, on device)")
    if args.prepared:
        from alexnet_lab.data.imagenet import ImageNetDataModule

        for name, options in variants[1:]:
            data = ImageNetDataModule(str(args.prepared), layout="prepared", num_workers=16,
                                      batch_size=args.batch, num_classes=1000)  # fmt: skip
            rate = lightning_rate(args, batches, loader=data, **options)
            print(f"{name:<40} {rate:10.0f} images/s (prepared shards, end to end)")


if __name__ == "__main__":
    main()
