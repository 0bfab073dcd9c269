"""Every figure of the paper's configuration on one GPU, in one command (bench/gpu.sh runs it):

    python bench/gpu.py OUTDIR            # a CUDA machine: about 10 minutes
    python bench/gpu.py OUTDIR --cpu      # the same steps, tiny, on CPU (CI runs this, so the script never rots)

Writes OUTDIR/results.json and OUTDIR/results.txt (the same figures as text), section by section, as each
finishes, so a run cut short keeps what it measured:

- env: GPU, driver, torch, CUDA, torchvision, lightning versions.
- train_step: images/s of our LightningModule + Trainer on synthetic batches already on the device, for fp32,
  bf16-mixed, + channels_last, + torch.compile, at batch 128 and 512.
- overhead: ours against a plain PyTorch loop on the same model and batches (bf16-mixed + channels_last), and
  the host-side work of a step, each measured alone in microseconds: the per-step reseeding (seed_step), the
  metric update, and the device sync a per-step logged value costs.
- lrn: PaperLRN forward + backward on conv1's and conv2's maps, eager and compiled, against forward + backward
  of the five convolutions of the same step.
- loader: the training loader alone from prepared shards, CPU decoding with 4, 8 and all cores' workers, and
  data.decode=gpu.
- end_to_end: src/train.py experiment=paper on prepared shards, one device, two epochs; the second epoch's
  train/images_per_sec and the mean GPU utilisation (nvidia-smi) over the run.
- The GPU tests (pytest -m gpu) are run by bench/gpu.sh, into OUTDIR/gpu_tests.txt.

The shards are generated here: a pool of distinct ImageNet-like images, prepared once, then listed again as
further shards (hard links) until the training set is large enough that an epoch lasts 10 s or more at
25,000 images/s. The pool stays in the page cache, so the loader reads from memory, not from a disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(BENCH))

import lightning as L  # noqa: E402

import train_step  # noqa: E402
from alexnet_lab.data import prepared as prep  # noqa: E402
from alexnet_lab.models.alexnet import PaperLRN  # noqa: E402

TINY_NET = ["model.net.widths=[16,32,32,32,16]", "model.net.fc_width=64"]
TINY = {"widths": (16, 32, 32, 32, 16), "fc_width": 64}  # the same, for the in-process sections


class Results:
    def __init__(self, out: Path) -> None:
        self.out, self.data = out, {}
        out.mkdir(parents=True, exist_ok=True)
        self.text = open(out / "results.txt", "a")  # noqa: SIM115

    def put(self, section: str, key: str, value: Any, line: str | None = None) -> None:
        self.data.setdefault(section, {})[key] = value
        (self.out / "results.json").write_text(json.dumps(self.data, indent=1) + "\n")
        if line is not None:
            print(line, flush=True)
            self.text.write(line + "\n")
            self.text.flush()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_call_us(work: Callable[[], object], device: torch.device, calls: int) -> float:
    work()
    sync(device)
    start = time.perf_counter()
    for _ in range(calls):
        work()
    sync(device)
    return 1e6 * (time.perf_counter() - start) / calls


# -- environment ---------------------------------------------------------------------------------------------
def env(results: Results, device: torch.device) -> None:
    import torchvision

    facts = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": L.__version__,
        "cuda": torch.version.cuda,
        "cpus": os.cpu_count(),
        "device": str(device),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name()
        query = ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"]
        facts["driver, memory"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    for key, value in facts.items():
        results.put("env", key, value, f"env: {key} = {value}")


# -- training step on synthetic batches ---------------------------------------------------------------------
VARIANTS = {
    "fp32": {},
    "bf16-mixed": {"precision": "bf16-mixed"},
    "bf16-mixed + channels_last": {"precision": "bf16-mixed", "channels_last": True},
    "bf16-mixed + channels_last + compile": {"precision": "bf16-mixed", "channels_last": True, "compile": True},
}


def step_args(device: torch.device, batch: int, steps: int, warmup: int) -> argparse.Namespace:
    return argparse.Namespace(device=device.type, batch=batch, steps=steps, warmup=warmup)


def train_steps(results: Results, device: torch.device, tiny: bool) -> None:
    for batch in (8,) if tiny else (128, 512):
        args = step_args(device, batch, 2 if tiny else 100, 1 if tiny else 20)
        batches = train_step.synthetic(batch, device.type)
        for name, options in VARIANTS.items():
            if tiny and options.get("compile"):
                continue  # compiling on CPU takes minutes: the GPU run measures it
            rate = train_step.lightning_rate(args, batches, **options, net=TINY if tiny else None)
            results.put(
                "train_step", f"{name}, batch {batch}", rate, f"train step, {name}, batch {batch}: {rate:,.0f} images/s"
            )


# -- the Lightning overhead and the host-side work of a step -------------------------------------------------
def overhead(results: Results, device: torch.device, tiny: bool) -> None:
    from alexnet_lab.data.sampling import seed_step
    from alexnet_lab.module import error_metrics

    batch = 8 if tiny else 128
    args = step_args(device, batch, 2 if tiny else 200, 1 if tiny else 30)
    batches = train_step.synthetic(batch, device.type)
    options: dict[str, Any] = {"precision": "bf16-mixed", "channels_last": True, "net": TINY if tiny else None}
    ours = train_step.lightning_rate(args, batches, **options)
    plain = train_step.plain_rate(args, batches, **options)
    percent = 100 * (plain / ours - 1)
    results.put("overhead", "ours images/s", ours)
    results.put("overhead", "plain images/s", plain)
    results.put(
        "overhead",
        "lightning overhead %",
        percent,
        f"overhead: plain loop {plain:,.0f} vs ours {ours:,.0f} images/s: {percent:+.1f}% (goal: <= 3%)",
    )
    step_us = 1e6 * batch / ours
    logits = torch.randn(batch, 1000, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    metrics = error_metrics(1000).to(device)
    loss = torch.zeros((), device=device)
    calls = 20 if tiny else 2000
    costs = {
        "seed_step (per-step reseeding)": per_call_us(lambda: seed_step(0, 5, 0), device, calls),
        "torch.manual_seed (what seed_step used to call)": per_call_us(lambda: torch.manual_seed(5), device, calls),
        "top-1/top-5 metric update": per_call_us(lambda: metrics.update(logits, labels), device, calls),
        "device sync of a logged value": per_call_us(lambda: loss.add_(1).item(), device, calls),
    }
    for name, us in costs.items():
        results.put(
            "overhead",
            f"{name} us",
            us,
            f"overhead: {name}: {us:.1f} us per step, {100 * us / step_us:.2f}% of a {step_us:,.0f} us step",
        )


# -- LRN against the convolutions ------------------------------------------------------------------------------
def lrn(results: Results, device: torch.device, tiny: bool) -> None:
    from alexnet_lab.models.alexnet import AlexNet

    batch = 4 if tiny else 128
    rounds = 2 if tiny else 20
    net = AlexNet(columns=2, **(TINY if tiny else {})).to(device)

    def fwd_bwd(module: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], object]:
        def work() -> None:
            module(x).float().sum().backward()

        return work

    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        image = torch.randn(batch, 3, 224, 224, device=device)
        maps = {
            "conv1": torch.randn(batch, net.layers["conv1"].out_channels, 55, 55, device=device),
            "conv2": torch.randn(batch, net.layers["conv2"].out_channels, 27, 27, device=device),
        }
        convs = net.features.to(device)
        conv_us = per_call_us(fwd_bwd(convs, image), device, rounds)
        results.put(
            "lrn",
            "features forward+backward us",
            conv_us,
            f"lrn: conv1..conv5 with their pools and norms, forward + backward: {conv_us / 1000:.2f} ms",
        )
        for kind in ("eager", "compiled"):
            if kind == "compiled" and tiny:
                continue
            layer = PaperLRN(columns=2)
            module = torch.compile(layer) if kind == "compiled" else layer
            for name, x in maps.items():
                x = x.to(torch.bfloat16 if device.type == "cuda" else torch.float32).requires_grad_()
                us = per_call_us(fwd_bwd(module, x), device, rounds)
                results.put(
                    "lrn",
                    f"{name} {kind} us",
                    us,
                    f"lrn: {name}'s maps, {kind}, forward + backward: {us / 1000:.2f} ms "
                    f"({100 * us / conv_us:.1f}% of the features' step)",
                )


# -- prepared shards, generated here ------------------------------------------------------------------------------
def make_shards(root: Path, distinct: int, total: int, workers: int) -> Path:
    """``distinct`` ImageNet-like images prepared once, then listed again (hard links) up to ``total``."""
    from loader import generate

    out = root / "prepared"
    generate(root / "raw", distinct, classes=10)
    prep.prepare(root / "raw", out, shard_size=max(distinct // 4, 1), workers=workers, progress=False)
    meta = json.loads((out / prep.META_FILE).read_text())
    shards = meta["train"]["shards"]
    copies = max(1, -(-total // distinct))
    for copy in range(1, copies):
        for k in range(shards):
            for suffix in (".jpg.bin", ".idx.npy"):
                os.link(out / f"train-{k:05d}{suffix}", out / f"train-{copy * shards + k:05d}{suffix}")
    meta["train"] = {"images": meta["train"]["images"] * copies, "shards": shards * copies}
    (out / prep.META_FILE).write_text(json.dumps(meta))
    return out


def loader(results: Results, device: torch.device, shards: Path, tiny: bool) -> None:
    from alexnet_lab.data.imagenet import ImageNetDataModule

    cores = os.cpu_count() or 1
    batch, batches = (8, 6) if tiny else (128, 300)
    settings = [("cpu", w) for w in sorted({min(4, cores), min(8, cores), cores})] + [("gpu", min(8, cores))]
    if tiny:
        settings = [("cpu", 2), ("gpu", 2)]
    for decode, workers in settings:
        dm = ImageNetDataModule(
            str(shards), layout="prepared", num_classes=10, batch_size=batch, num_workers=workers, decode=decode
        )
        dm.setup("fit")
        it = iter(dm.train_dataloader())
        warm = 2 if tiny else 20
        for _ in range(warm):
            image = dm.on_before_batch_transfer(next(it), 0)["image"].to(device, non_blocking=True)
        sync(device)
        start, images = time.perf_counter(), 0
        for _ in range(batches):
            moved = dm.on_before_batch_transfer(next(it), 0)
            image = moved["image"].to(device, non_blocking=True)
            images += int(moved["label"].numel())
        sync(device)
        del image
        rate = images / (time.perf_counter() - start)
        results.put(
            "loader",
            f"decode={decode}, {workers} workers",
            rate,
            f"loader: decode={decode}, {workers} workers: {rate:,.0f} images/s",
        )


# -- end to end ----------------------------------------------------------------------------------------------------
@contextmanager
def gpu_utilisation(device: torch.device, samples: list[float]) -> Iterator[None]:
    if device.type != "cuda" or not shutil.which("nvidia-smi"):
        yield
        return
    query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "250"]
    proc = subprocess.Popen(query, stdout=subprocess.PIPE, text=True)
    try:
        yield
    finally:
        proc.terminate()
        out, _ = proc.communicate()
        samples.extend(float(v) for v in out.split() if v.replace(".", "").isdigit())


def end_to_end(results: Results, device: torch.device, shards: Path, out: Path, tiny: bool) -> None:
    run_dir = out / "end_to_end_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    cores = os.cpu_count() or 1
    overrides = [
        "experiment=paper",
        "gpus=1",
        "data=imagenet_prepared",
        f"data.root={shards}",
        "data.num_classes=10",
        "logger=csv",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
        "callbacks.figures.neighbours=false",
        "model.net.columns=2",
    ]
    if tiny:
        overrides += [*TINY_NET, "data.batch_size=8", "data.num_workers=2"]
    else:
        overrides += [
            "trainer.precision=bf16-mixed",
            "model.channels_last=true",
            f"data.num_workers={cores}",
            "trainer.enable_progress_bar=false",
        ]
    samples: list[float] = []
    start = time.perf_counter()
    with gpu_utilisation(device, samples):
        result = subprocess.run(
            [sys.executable, str(REPO / "src" / "train.py"), *overrides], cwd=out, capture_output=True, text=True
        )
    (out / "end_to_end.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        results.put("end_to_end", "error", result.stderr[-2000:], f"end to end: failed, see {out / 'end_to_end.log'}")
        return
    import csv

    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rates = [float(r["train/images_per_sec"]) for r in csv.DictReader(f) if r.get("train/images_per_sec")]
    results.put("end_to_end", "command", "python src/train.py " + " ".join(overrides))
    results.put("end_to_end", "seconds", time.perf_counter() - start)
    results.put(
        "end_to_end",
        "images/s per epoch",
        rates,
        f"end to end: train/images_per_sec by epoch: {', '.join(f'{r:,.0f}' for r in rates)} "
        f"(goal: 25,000 on one H100)",
    )
    if samples:
        mean = sum(samples) / len(samples)
        results.put("end_to_end", "gpu utilisation %", mean, f"end to end: mean GPU utilisation {mean:.0f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on CPU")
    parser.add_argument("--images", type=int, default=2000, help="distinct images in the generated pool")
    parser.add_argument("--train-images", type=int, default=256_000, help="training images listed in the shards")
    parser.add_argument("--only", default="", help="comma-separated sections to run (default: all)")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA device here: run with --cpu for the tiny CPU mode", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    out = args.out.resolve()
    results = Results(out)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    wanted = set(filter(None, args.only.split(","))) or {"env", "train_step", "overhead", "lrn", "loader", "end_to_end"}
    started = time.perf_counter()
    for name, run in (("env", env), ("train_step", train_steps), ("overhead", overhead), ("lrn", lrn)):
        if name in wanted:
            section = time.perf_counter()
            run(results, device) if name == "env" else run(results, device, args.cpu)  # type: ignore[operator]
            results.put("seconds", name, time.perf_counter() - section)
    if wanted & {"loader", "end_to_end"}:
        with tempfile.TemporaryDirectory(prefix="alexnet-lab-bench-") as tmp:
            distinct, total = (64, 128) if args.cpu else (args.images, args.train_images)
            section = time.perf_counter()
            shards = make_shards(Path(tmp), distinct, total, os.cpu_count() or 1)
            results.put(
                "seconds",
                "shards",
                time.perf_counter() - section,
                f"shards: {total:,} training images ({distinct:,} distinct) in {time.perf_counter() - section:.0f} s",
            )
            if "loader" in wanted:
                section = time.perf_counter()
                loader(results, device, shards, args.cpu)
                results.put("seconds", "loader", time.perf_counter() - section)
            if "end_to_end" in wanted:
                section = time.perf_counter()
                end_to_end(results, device, shards, out, args.cpu)
                results.put("seconds", "end_to_end", time.perf_counter() - section)
    results.put(
        "seconds",
        "total",
        time.perf_counter() - started,
        f"total: {time.perf_counter() - started:.0f} s; figures in {out / 'results.json'}",
    )
    return 1 if "error" in results.data.get("end_to_end", {}) else 0


if __name__ == "__main__":
    sys.exit(main())
