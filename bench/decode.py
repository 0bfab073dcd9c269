"""Decoding a prepared 256x256 image, by JPEG setting: speed, size and distance from the on-the-fly pixels.

    python bench/decode.py                 # bench/loader.py's generated ImageNet-like images
    python bench/decode.py --root DIR      # any folders-layout dataset

For each quality and chroma subsampling that src/prepare.py can write, on one core: images/s of
simplejpeg's decode with the exact and the fast IDCT (what ``data.fast_dct`` picks), the mean size, and the
mean absolute difference and PSNR against the on-the-fly 256x256 pixels (the exact decode, and the fast one).
Then, at quality 95 4:4:4 and 90 4:2:0: PIL, torchvision.io.decode_jpeg (CPU) and simplejpeg with
``fastupsample`` against simplejpeg, and fastupsample's mean difference.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg
import torch

from alexnet_lab.data.layouts import load_rgb, read_split
from alexnet_lab.data.prepared import encode_jpeg
from alexnet_lab.data.transforms import preprocess
from loader import generate

SETTINGS = [(95, 444), (95, 420), (90, 444), (90, 420), (85, 420)]


def decode_rate(blobs: list[bytes], fast: bool, rounds: int = 3) -> float:
    buffer = np.empty((256, 256, 3), dtype=np.uint8)
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for blob in blobs:
            simplejpeg.decode_jpeg(blob, fastdct=fast, buffer=buffer)
        best = max(best, len(blobs) / (time.perf_counter() - start))
    return best


def distance(blobs: list[bytes], originals: list[np.ndarray], fast: bool) -> tuple[float, float]:
    decoded = [simplejpeg.decode_jpeg(blob, fastdct=fast).astype(np.float64) for blob in blobs]
    errors = [np.abs(d - o) for d, o in zip(decoded, originals, strict=True)]
    mse = np.mean([np.mean(e**2) for e in errors])
    return float(np.mean([e.mean() for e in errors])), float(10 * np.log10(255.0**2 / mse))


def other_decoders(blobs: list[bytes], originals: list[np.ndarray], rounds: int = 3) -> None:
    """The same JPEGs with PIL, torchvision.io.decode_jpeg (CPU) and simplejpeg's fastupsample, which
    replicates the chroma instead of interpolating it."""
    import io

    from PIL import Image
    from torchvision.io import decode_jpeg

    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    buffer = np.empty((256, 256, 3), dtype=np.uint8)
    decoders = {
        "PIL": lambda i: np.asarray(Image.open(io.BytesIO(blobs[i])).convert("RGB")),
        "torchvision decode_jpeg": lambda i: decode_jpeg(tensors[i]),
        "simplejpeg": lambda i: simplejpeg.decode_jpeg(blobs[i], buffer=buffer),
        "simplejpeg fastupsample": lambda i: simplejpeg.decode_jpeg(blobs[i], fastupsample=True, buffer=buffer),
    }
    for name, decode in decoders.items():
        best = 0.0
        for _ in range(rounds):
            start = time.perf_counter()
            for i in range(len(blobs)):
                decode(i)
            best = max(best, len(blobs) / (time.perf_counter() - start))
        print(f"  {name:<24} {best:7.0f} images/s")
    upsampled = [simplejpeg.decode_jpeg(b, fastupsample=True).astype(np.float64) for b in blobs]
    err = np.mean([np.abs(u - o).mean() for u, o in zip(upsampled, originals, strict=True)])
    print(f"  fastupsample's mean difference from the on-the-fly pixels: {err:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="a folders-layout dataset (default: generate one)")
    parser.add_argument("--images", type=int, default=300, help="images to generate and time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="alexnet-lab-bench-") as tmp:
        root = args.root or generate(Path(tmp) / "raw", args.images)
        paths = [path for path, _ in read_split(root, "train").samples][: args.images]
        pixels = [preprocess(load_rgb(path)) for path in paths]
    originals = [p.permute(1, 2, 0).numpy().astype(np.float64) for p in pixels]
    print(f"{len(pixels)} images, one core, simplejpeg {simplejpeg.__version__}")
    print(f"{'quality':>7} {'chroma':>6} {'KB':>6} {'exact/s':>8} {'fast/s':>7}   exact: err  PSNR   fast: err  PSNR")
    for quality, chroma in SETTINGS:
        blobs = [encode_jpeg(p, quality, chroma) for p in pixels]
        kb = np.mean([len(b) for b in blobs]) / 1024
        exact, fast = decode_rate(blobs, False), decode_rate(blobs, True)
        (e_err, e_psnr), (f_err, f_psnr) = distance(blobs, originals, False), distance(blobs, originals, True)
        print(f"{quality:>7} {chroma:>6} {kb:6.1f} {exact:8.0f} {fast:7.0f}   {e_err:10.2f} {e_psnr:5.1f} "
              f"{f_err:10.2f} {f_psnr:5.1f}")  # fmt: skip
    for quality, chroma in ((95, 444), (90, 420)):
        print(f"other decoders, quality {quality}, chroma {chroma}, one core:")
        other_decoders([encode_jpeg(p, quality, chroma) for p in pixels], originals)


if __name__ == "__main__":
    main()
