"""Every figure of the paper's configuration on one GPU, in one command (bench/gpu.sh runs it):

    python bench/gpu.py OUTDIR --quick     # a CUDA machine: about 6 minutes, the headline figures
    python bench/gpu.py OUTDIR             # the same at full size: about 15 minutes
    python bench/gpu.py OUTDIR --cpu       # the same steps, tiny, on CPU (tests/test_bench.py runs it)

Writes OUTDIR/results.json and OUTDIR/results.txt (the same figures as text) section by section, as each
finishes, so a run cut short keeps what it measured; the most telling sections come first:

- env: GPU, driver, torch, CUDA, torchvision and lightning versions.
- end_to_end: src/train.py experiment=paper on prepared shards, one device, bf16-mixed, channels-last and
  model.compile (the best settings), two shortened epochs; each epoch's train/images_per_sec and the mean GPU
  utilisation (nvidia-smi) over the run.
- train_step: images/s of our module + Trainer on synthetic batches already on the device: fp32, bf16-mixed,
  + channels_last, + compile, and the plain loop on the last (bench/train_step.py).
- profile: 20 steps of the best variant under torch.profiler: a Chrome trace (profile_trace.json) and the top
  40 of key_averages by device time (profile_top40.txt), to study without the GPU afterwards.
- lrn: PaperLRN forward + backward on conv1's and conv2's maps in bf16, eager and compiled, with the compiled
  kernels' count, against torch.nn.LocalResponseNorm (bench/lrn.py).
- cudnn: conv1 on its 3 channels against 4 (the weight given a zero channel: the same outputs), and each grouped
  convolution (conv2, conv4, conv5) against two convolutions on the two halves; forward + backward in bf16.
- loader: the training loader alone from prepared shards, 4, 8 and all cores' workers.

The shards are generated here: a pool of distinct ImageNet-like images, prepared once, then listed again as
further shards (hard links) until the training set is large enough for an epoch to last several seconds at
25,000 images/s. The pool stays in the page cache, so the loader reads from memory, not from a disk.
"""

from __future__ import annotations

import argparse
import csv
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

import lightning as L
import torch
import torch.nn.functional as F

import lrn as lrn_bench
import train_step
from alexnet_lab.data import prepared as prep
from alexnet_lab.models.alexnet import AlexNet
from alexnet_lab.module import ClassifierModule
from loader import generate

REPO = Path(__file__).resolve().parents[1]
TINY = {"widths": [16, 32, 32, 32, 16], "fc_width": 64}  # the net of the CPU mode
TINY_NET = ["model.net.widths=[16,32,32,32,16]", "model.net.fc_width=64"]


class Results:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.data: dict[str, dict[str, Any]] = {}
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


def best_ms(work: Callable[[], object], device: torch.device, rounds: int) -> float:
    return lrn_bench.best_ms(work, device, rounds)


# -- environment ---------------------------------------------------------------------------------------------
def env(results: Results, device: torch.device, size: str) -> None:
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


def end_to_end(results: Results, device: torch.device, shards: Path, out: Path, size: str) -> None:
    run_dir = out / "end_to_end_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = [
        "experiment=paper",
        "gpus=1",
        "model.net.columns=2",
        "data=imagenet_prepared",
        f"data.root={shards}",
        "data.num_classes=10",
        "logger=csv",
        "trainer.max_epochs=2",
        f"hydra.run.dir={run_dir}",
        "callbacks.figures.neighbours=false",
        "trainer.enable_progress_bar=false",
    ]
    if size == "cpu":
        overrides += [*TINY_NET, "data.batch_size=8", "data.num_workers=2", "model.schedule=step"]
    else:
        overrides += ["trainer.precision=bf16-mixed", "model.channels_last=true", "model.compile=true",
                      f"data.num_workers={os.cpu_count()}"]  # fmt: skip
    attempts = [overrides] if size == "cpu" else [overrides, [o for o in overrides if o != "model.compile=true"]]
    for attempt in attempts:  # if the compiled run fails, the same without model.compile
        shutil.rmtree(run_dir, ignore_errors=True)
        samples: list[float] = []
        start = time.perf_counter()
        with gpu_utilisation(device, samples):
            result = subprocess.run([sys.executable, str(REPO / "src" / "train.py"), *attempt], cwd=out,
                                    capture_output=True, text=True)  # fmt: skip
        log = out / f"end_to_end{'' if attempt is overrides else '_without_compile'}.log"
        log.write_text(result.stdout + result.stderr)
        results.put("end_to_end", "command", "python src/train.py " + " ".join(attempt))
        if result.returncode == 0:
            break
        results.put("end_to_end", f"error ({log.name})", result.stderr[-2000:], f"end to end: failed, see {log}")
    else:
        return
    with open(run_dir / "csv" / "metrics.csv", newline="") as f:
        rates = [float(r["train/images_per_sec"]) for r in csv.DictReader(f) if r.get("train/images_per_sec")]
    results.put("end_to_end", "seconds", time.perf_counter() - start)
    results.put("end_to_end", "images/s per epoch", rates,
                f"end to end: train/images_per_sec by epoch: {', '.join(f'{r:,.0f}' for r in rates)} "
                "(goal: 25,000 on one H100)")  # fmt: skip
    if samples:
        mean = sum(samples) / len(samples)
        results.put("end_to_end", "gpu utilisation %", mean, f"end to end: mean GPU utilisation {mean:.0f}%")


# -- the training step on synthetic batches, and its profile -------------------------------------------------------
def train_steps(results: Results, device: torch.device, size: str) -> None:
    if size == "cpu":
        batches = train_step.synthetic(4, "cpu")
        torch.manual_seed(0)
        module = ClassifierModule({**train_step.ALEXNET, **TINY}, schedule="step")
        timer = train_step.lightning_run(module, batches, 2, 1, "cpu")
        rate = timer.images / (timer.end - timer.start)
        results.put("train_step", "fp32, batch 4", rate, f"train step, fp32, batch 4: {rate:,.0f} images/s")
        return
    for batch in (128,) if size == "quick" else (128, 512):
        steps, warmup = (100, 20) if size == "quick" else (200, 30)
        for name, rate in train_step.gpu_variants(batch, steps, warmup).items():
            results.put("train_step", f"{name}, batch {batch}", rate,
                        f"train step, {name}, batch {batch}: {rate:,.0f} images/s")  # fmt: skip


def profile(results: Results, device: torch.device, out: Path, size: str) -> None:
    """20 steps of the best variant (bf16-mixed, channels-last, compiled; on CPU the tiny net eager) under
    torch.profiler, after 10 untimed ones."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    cpu = size == "cpu"
    batches = train_step.synthetic(4 if cpu else 128, device.type)
    torch.manual_seed(0)
    options: dict[str, Any] = {} if cpu else {"channels_last": True, "compile": True}
    module = ClassifierModule({**train_step.ALEXNET, **(TINY if cpu else {})}, schedule="step", **options)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    steps = 4 if cpu else 20

    class Profiled(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int) -> None:
            if i == 10:
                sync(device)
                self.prof = profiler(activities=activities, record_shapes=False)
                self.prof.__enter__()

        def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            sync(device)
            self.prof.__exit__(None, None, None)

    callback = Profiled()
    train_step.lightning_run(module, batches, steps, 10, device.type, "32-true" if cpu else "bf16-mixed", [callback])
    callback.prof.export_chrome_trace(str(out / "profile_trace.json"))
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = callback.prof.key_averages().table(sort_by=sort, row_limit=40)
    (out / "profile_top40.txt").write_text(table + "\n")
    results.put("profile", "files", ["profile_trace.json", "profile_top40.txt"],
                f"profile: {steps} steps into {out / 'profile_trace.json'} and profile_top40.txt")  # fmt: skip


# -- LRN and cuDNN's choices ----------------------------------------------------------------------------------------
def lrn(results: Results, device: torch.device, size: str) -> None:
    batch, rounds = (2, 1) if size == "cpu" else (128, 20)
    dtype = torch.float32 if size == "cpu" else torch.bfloat16
    for layer, figures in lrn_bench.timings(batch, device, dtype, rounds).items():
        for key, value in figures.items():
            results.put("lrn", f"{layer} {key}", value, f"lrn: {layer} {key}: {value:.2f}" + ("" if "kernels" in key
                                                                                              else " ms"))  # fmt: skip


def fwd_bwd(work: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        work(x).float().sum().backward()

    return step


def cudnn(results: Results, device: torch.device, size: str) -> None:
    """conv1 with 3 input channels against 4 (a zero channel on both sides: the same outputs), and each grouped
    convolution against two convolutions on the halves (the same outputs): forward + backward ms."""
    batch, rounds = (2, 1) if size == "cpu" else (128, 20)
    dtype = torch.float32 if size == "cpu" else torch.bfloat16
    net = AlexNet(columns=2).to(device, dtype).to(memory_format=torch.channels_last)
    conv1 = net.layers["conv1"]
    image = torch.randn(batch, 3, 227, 227, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    four = F.pad(image, (0, 0, 0, 0, 0, 1)).contiguous(memory_format=torch.channels_last).requires_grad_()
    weight4 = F.pad(conv1.weight, (0, 0, 0, 0, 0, 1))

    def conv1_four(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight4, conv1.bias, stride=4)

    same = torch.allclose(conv1(image).float(), conv1_four(four).float(), atol=1e-2, rtol=1e-2)
    image.requires_grad_()
    for name, work, x in (("3 channels", conv1, image), ("4 channels", conv1_four, four)):
        ms = best_ms(fwd_bwd(work, x), device, rounds)
        results.put("cudnn", f"conv1 {name}", ms, f"cudnn: conv1, {name}: {ms:.3f} ms (outputs equal: {same})")
    inputs = {"conv2": (96, 27), "conv4": (384, 13), "conv5": (384, 13)}
    for layer, (channels, side) in inputs.items():
        conv = net.layers[layer]
        x = torch.randn(batch, channels, side, side, device=device, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
        halves = conv.weight.chunk(2), conv.bias.chunk(2) if conv.bias is not None else (None, None)

        def split(t: torch.Tensor, conv: Any = conv, halves: Any = halves) -> torch.Tensor:
            parts = [
                F.conv2d(part, w, b, padding=conv.padding)
                for part, w, b in zip(t.chunk(2, dim=1), *halves, strict=True)
            ]
            return torch.cat(parts, dim=1)

        same = torch.allclose(conv(x).float(), split(x).float(), atol=1e-2, rtol=1e-2)
        for name, op in (("grouped", conv), ("two halves", split)):
            ms = best_ms(fwd_bwd(op, x), device, rounds)
            results.put("cudnn", f"{layer} {name}", ms, f"cudnn: {layer}, {name}: {ms:.3f} ms (outputs equal: {same})")


# -- the loader alone, from prepared shards ---------------------------------------------------------------------------
def make_shards(root: Path, distinct: int, total: int) -> Path:
    """``distinct`` ImageNet-like images prepared once, then listed again (hard links) up to ``total``."""
    out = root / "prepared"
    generate(root / "raw", distinct, classes=10)
    prep.prepare(root / "raw", out, shard_size=max(distinct // 4, 1), workers=os.cpu_count(), progress=False)
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


def loader(results: Results, device: torch.device, shards: Path, size: str) -> None:
    from alexnet_lab.data.imagenet import ImageNetDataModule

    cores = os.cpu_count() or 1
    batch, batches, warm = (8, 6, 2) if size == "cpu" else (128, 150 if size == "quick" else 300, 20)
    for workers in [2] if size == "cpu" else sorted({min(4, cores), min(8, cores), cores}):
        dm = ImageNetDataModule(str(shards), layout="prepared", num_classes=10, batch_size=batch, num_workers=workers)
        dm.setup("fit")
        it = iter(dm.train_dataloader())
        for _ in range(warm):
            image = next(it)["image"].to(device, non_blocking=True)
        sync(device)
        start, images = time.perf_counter(), 0
        for _ in range(batches):
            loaded = next(it)
            image = loaded["image"].to(device, non_blocking=True)
            images += int(loaded["label"].numel())
        sync(device)
        del image, it
        rate = images / (time.perf_counter() - start)
        results.put("loader", f"{workers} workers", rate, f"loader: {workers} workers: {rate:,.0f} images/s")


SECTIONS = ("env", "end_to_end", "train_step", "profile", "lrn", "cudnn", "loader")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--cpu", action="store_true", help="tiny sizes on CPU")
    mode.add_argument("--quick", action="store_true", help="the headline figures in about 6 minutes")
    parser.add_argument("--images", type=int, default=2000, help="distinct images in the generated pool")
    parser.add_argument("--train-images", type=int, default=None, help="training images listed in the shards")
    parser.add_argument("--only", default="", help=f"comma-separated sections, of {', '.join(SECTIONS)}")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA device here: run with --cpu for the tiny CPU mode", file=sys.stderr)
        return 2
    size = "cpu" if args.cpu else "quick" if args.quick else "full"
    device = torch.device("cpu" if args.cpu else "cuda")
    out = args.out.resolve()
    results = Results(out)
    wanted = set(filter(None, args.only.split(","))) or set(SECTIONS)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alexnet-lab-bench-") as tmp:
        shards: Path | None = None
        for name in (s for s in SECTIONS if s in wanted):
            section = time.perf_counter()
            if name in ("end_to_end", "loader") and shards is None:
                distinct = 64 if args.cpu else args.images
                total = args.train_images or {"cpu": 128, "quick": 96_000, "full": 256_000}[size]
                shards = make_shards(Path(tmp), distinct, total)
                results.put("seconds", "shards", time.perf_counter() - section,
                            f"shards: {total:,} training images ({distinct:,} distinct)")  # fmt: skip
            if name == "env":
                env(results, device, size)
            elif name in ("end_to_end", "loader"):
                assert shards is not None
                end_to_end(results, device, shards, out, size) if name == "end_to_end" else loader(
                    results, device, shards, size)  # fmt: skip
            elif name == "profile":
                profile(results, device, out, size)
            else:
                {"train_step": train_steps, "lrn": lrn, "cudnn": cudnn}[name](results, device, size)
            results.put("seconds", name, time.perf_counter() - section)
    total_s = time.perf_counter() - started
    results.put("seconds", "total", total_s, f"total: {total_s:.0f} s; figures in {out / 'results.json'}")
    return 0 if "images/s per epoch" in results.data.get("end_to_end", {}) or "end_to_end" not in wanted else 1


if __name__ == "__main__":
    sys.exit(main())
