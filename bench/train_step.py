"""The training step: our LightningModule + Trainer against a plain PyTorch loop on the same net and optimiser.

    python bench/train_step.py                  # CPU: the framework's cost per step, in microseconds
    python bench/train_step.py --device cuda    # GPU: images/s of the paper's net, step by step variant

CPU: a net so narrow that compute is small (every width 2, batch 1, one thread), so that what differs between
the loops is host work. Five loops over the same batches, in alternating rounds, each one's best round:
the plain loop; Lightning's Trainer with a LightningModule that only computes the loss (Lightning's own
loop), under automatic and under manual optimisation; our ClassifierModule in that Trainer; and our module
with the callbacks and CSV logger of ``python src/train.py experiment=smoke`` (what a user runs). Prints
microseconds per step and each loop's cost over the plain loop.

GPU: synthetic batches made once on the device, the paper's net (two columns, LRN) at ``--batch``: fp32,
bf16-mixed, + channels_last, + model.compile (CUDA graphs), and the plain loop on the last.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict
from torch.utils.data import DataLoader

from alexnet_lab.models.alexnet import PAPER_INPUT_SIZE
from alexnet_lab.module import ClassifierModule

CONF = Path(__file__).resolve().parents[1] / "conf"
ALEXNET = {"_target_": "alexnet_lab.models.AlexNet", "num_classes": 1000}
NARROW_CLASSES = 10
NARROW = {"widths": [2, 2, 2, 2, 2], "fc_width": 2, "num_classes": NARROW_CLASSES}


def synthetic(batch: int, device: str, classes: int = 1000, n: int = 4) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [{"image": (torch.rand(batch, 3, PAPER_INPUT_SIZE, PAPER_INPUT_SIZE, generator=g) * 255 - 120).to(device),
             "label": torch.randint(0, classes, (batch,), generator=g).to(device)} for _ in range(n)]  # fmt: skip


def batches_of(batches: list[dict[str, torch.Tensor]], steps: int) -> DataLoader:
    """The same batches over and over, ``steps`` of them (``batch_size=None``: each item is a batch)."""
    return DataLoader([batches[i % len(batches)] for i in range(steps)], batch_size=None)  # type: ignore[arg-type]


class Timer(L.Callback):
    """Times the steps after the first ``warmup``, up to the end of the last (synchronising a GPU there only)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.images = warmup, 0.0, 0.0, 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
        if i == self.warmup:
            sync(pl_module.device)
            self.start = time.perf_counter()
        if i >= self.warmup:
            self.images += int(batch["label"].numel())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sync(pl_module.device)
        self.end = time.perf_counter()


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class LossOnly(L.LightningModule):
    """The least a LightningModule does: the loss, and the same optimiser as ours."""

    def __init__(self, module: ClassifierModule) -> None:
        super().__init__()
        self.inner = module

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return F.cross_entropy(self.inner.net(batch["image"]), batch["label"])

    def configure_optimizers(self) -> Any:
        return self.inner.configure_optimizers()["optimizer"]


class ManualLossOnly(LossOnly):
    """The same under manual optimisation: Lightning's loop calls training_step alone, without the closure and the
    optimiser hooks around it (and then refuses gradient clipping and gradient accumulation)."""

    def __init__(self, module: ClassifierModule) -> None:
        super().__init__(module)
        self.automatic_optimization = False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        optimizer = self.optimizers()
        optimizer.zero_grad()  # type: ignore[union-attr]
        loss = super().training_step(batch, batch_idx)
        self.manual_backward(loss)
        optimizer.step()  # type: ignore[union-attr]
        return loss


def smoke_callbacks(out: Path) -> tuple[list[L.Callback], list[Any]]:
    """The callbacks (but the figures, drawn once at the end) and the CSV logger of experiment=smoke."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=["experiment=smoke", "logger=csv"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    callbacks = [instantiate(c) for name, c in cfg.callbacks.items() if c is not None and name != "figures"]
    return callbacks, [instantiate(cfg.logger.csv)]


def lightning_run(module: L.LightningModule, batches: list[dict], steps: int, warmup: int, device: str,
                  precision: str = "32-true", callbacks: list[L.Callback] | None = None,
                  logger: Any = False) -> Timer:  # fmt: skip
    timer = Timer(warmup)
    checkpointing = any(isinstance(c, L.pytorch.callbacks.Checkpoint) for c in callbacks or [])
    trainer = L.Trainer(accelerator="gpu" if device == "cuda" else device, devices=1, max_steps=warmup + steps,
                        precision=precision, logger=logger, enable_checkpointing=checkpointing,  # type: ignore[arg-type]
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        log_every_n_steps=50, callbacks=[*(callbacks or []), timer])  # fmt: skip
    trainer.fit(module, batches_of(batches, warmup + steps))
    return timer


def plain_run(module: ClassifierModule, batches: list[dict], steps: int, warmup: int, device: str,
              precision: str = "32-true") -> Timer:  # fmt: skip
    """The same net, optimiser and batches in a hand-written loop (bf16 autocast for ``bf16-mixed``)."""
    module.configure_model()  # channels_last, compile
    module.to(device)
    optimizer = module.configure_optimizers()["optimizer"]
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    timer = Timer(warmup)
    for i, batch in enumerate(batches_of(batches, warmup + steps)):
        if i == warmup:
            sync(device)
            timer.start = time.perf_counter()
        timer.images += int(batch["label"].numel()) if i >= warmup else 0
        optimizer.zero_grad()
        with autocast:
            loss = F.cross_entropy(module(batch["image"]), batch["label"])
        loss.backward()
        optimizer.step()
    sync(device)
    timer.end = time.perf_counter()
    return timer


def cpu_overhead(steps: int, warmup: int, rounds: int) -> dict[str, float]:
    """Microseconds per step of each loop (the best of ``rounds`` alternating rounds)."""
    torch.set_num_threads(1)
    batches = synthetic(1, "cpu", classes=NARROW_CLASSES)

    def ours() -> ClassifierModule:
        torch.manual_seed(0)
        return ClassifierModule({**ALEXNET, **NARROW}, schedule="step")

    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="alexnet-lab-bench-") as tmp:
        loops = {
            "plain PyTorch loop": lambda: plain_run(ours(), batches, steps, warmup, "cpu"),
            "Lightning, a module that only computes the loss": lambda: lightning_run(
                LossOnly(ours()), batches, steps, warmup, "cpu"
            ),
            "... under manual optimisation": lambda: lightning_run(
                ManualLossOnly(ours()), batches, steps, warmup, "cpu"
            ),
            "Lightning, our ClassifierModule": lambda: lightning_run(ours(), batches, steps, warmup, "cpu"),
            "... with experiment=smoke's callbacks and CSV logger": lambda: lightning_run(
                ours(), batches, steps, warmup, "cpu", "32-true", *smoke_callbacks(Path(tmp))
            ),
        }
        for _ in range(rounds):
            for name, loop in loops.items():
                timer = loop()
                best[name] = min(best.get(name, float("inf")), 1e6 * (timer.end - timer.start) / steps)
    return best


def gpu_variants(batch: int, steps: int, warmup: int) -> dict[str, float]:
    """images/s of each variant of our step, and of the plain loop on the fastest one."""
    batches = synthetic(batch, "cuda")
    variants: dict[str, dict[str, Any]] = {
        "fp32": {},
        "bf16-mixed": {"precision": "bf16-mixed"},
        "bf16-mixed + channels_last": {"precision": "bf16-mixed", "channels_last": True},
        "bf16-mixed + channels_last + compile": {"precision": "bf16-mixed", "channels_last": True, "compile": True},
    }
    rates = {}
    for name, options in variants.items():
        precision = options.pop("precision", "32-true")
        torch.manual_seed(0)
        module = ClassifierModule(ALEXNET, schedule="step", **options)
        timer = lightning_run(module, batches, steps, warmup, "cuda", precision)
        rates[name] = timer.images / (timer.end - timer.start)
    torch.manual_seed(0)
    module = ClassifierModule(ALEXNET, schedule="step", channels_last=True, compile=True)
    timer = plain_run(module, batches, steps, warmup, "cuda", "bf16-mixed")
    rates["plain loop, bf16-mixed + channels_last + compile"] = timer.images / (timer.end - timer.start)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=128, help="cuda: the batch (CPU: 1)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 300 cpu, 200 cuda)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 20 cpu, 30 cuda)")
    parser.add_argument("--rounds", type=int, default=3, help="cpu: alternating rounds, each loop's best counts")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    steps = args.steps or (200 if cuda else 300)
    warmup = args.warmup or (30 if cuda else 20)
    print(f"torch {torch.__version__}, lightning {L.__version__}; {steps} timed steps after {warmup}")
    if cuda:
        print(f"{torch.cuda.get_device_name()}, batch {args.batch}")
        for name, rate in gpu_variants(args.batch, steps, warmup).items():
            print(f"{name:<52} {rate:10,.0f} images/s")
        return
    print("CPU, 1 thread, batch 1, every width 2: microseconds per step (best of the rounds)")
    best = cpu_overhead(steps, warmup, args.rounds)
    plain = best["plain PyTorch loop"]
    for name, us in best.items():
        print(f"{name:<52} {us:8.0f} us" + (f"  (+{us - plain:.0f} us)" if us != plain else ""))


if __name__ == "__main__":
    main()
