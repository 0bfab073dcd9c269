"""Where a prepared training batch's time goes, per image, on one core and in-process:

    python bench/batch_parts.py

Prepares generated ImageNet-like images (bench/loader.py's), then times for batches of 128 training crops:
reading each image's bytes from the memory-mapped shard, the JPEG decode into the reused buffer (fast IDCT,
as data.fast_dct=true), the crop copies into a reused private batch, the same copies into a freshly
allocated shared-memory batch (what a loader worker hands over), and the whole of
PreparedDataset.__getitems__; the rest (index, geometry, Python) is the whole minus decode and copies.
Best of --rounds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import simplejpeg
import torch

from alexnet_lab import compat
from alexnet_lab.data import prepared as prep
from alexnet_lab.data.transforms import IMAGE_SIZE, Crops
from loader import generate


def best_us(work: Callable[[], object], images: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, (time.perf_counter() - start) / images * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="alexnet-lab-bench-") as tmp:
        generate(Path(tmp) / "raw", args.batch)
        shards = prep.prepare(Path(tmp) / "raw", Path(tmp) / "prepared", shard_size=args.batch, workers=1,
                              progress=False)  # fmt: skip
        reader = prep.ShardReader(shards, "train")
        crops = Crops("train")
        seeds = [1000 + i for i in range(args.batch)]
        items: list[int | tuple[int, int]] = list(enumerate(seeds))
        blobs = [reader.jpeg(i)[0] for i in range(args.batch)]
        geometry = [crops.geometry(IMAGE_SIZE, seed) for seed in seeds]
        buffer = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        size = crops.size
        shape = (args.batch, 1, size, size, 3)
        private = torch.empty(shape, dtype=torch.uint8)

        def decode() -> None:
            for blob in blobs:
                simplejpeg.decode_jpeg(blob, colorspace="RGB", fastdct=True, buffer=buffer)

        def copies(batch: torch.Tensor) -> None:
            out = batch.numpy()
            for j, ((top, left, _),) in enumerate(geometry):
                np.copyto(out[j, 0], buffer[top : top + size, left : left + size])

        dataset = prep.PreparedDataset(reader, crops, fast_dct=True)
        n, rounds = args.batch, args.rounds
        decode_us = best_us(decode, n, rounds)
        private_us = best_us(lambda: copies(private), n, rounds)
        shared_us = best_us(lambda: copies(compat.shared_uint8(shape)), n, rounds)
        whole_us = best_us(lambda: dataset.__getitems__(items), n, rounds)
        read_us = best_us(lambda: [reader.jpeg(i) for i in range(n)], n, rounds)
    print(f"per image, one core, batch {n} of {size}x{size} training crops, best of {rounds}:")
    print(f"  read the JPEG bytes from the memory map          {read_us:7.1f} us")
    print(f"  decode (fast IDCT, into a reused buffer)         {decode_us:7.1f} us")
    print(f"  crop into a reused private batch                 {private_us:7.1f} us")
    print(f"  crop into a fresh shared-memory batch            {shared_us:7.1f} us")
    print(f"  PreparedDataset.__getitems__, in-process         {whole_us:7.1f} us")
    print(f"  the rest (index, geometry, Python)               {whole_us - decode_us - private_us:7.1f} us")


if __name__ == "__main__":
    main()
