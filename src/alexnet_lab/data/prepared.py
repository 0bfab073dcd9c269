"""The paper's one-off preparation (section 2), done once into packed shards.

Every image is rescaled (short side 256), centre-cropped to 256x256 and re-encoded as JPEG. A split is cut
into shards of ``shard_size`` images, in the split's sorted order; a shard is two files:

- ``<split>-NNNNN.jpg.bin``: the JPEG files back to back;
- ``<split>-NNNNN.idx.npy``: int64 rows (offset, length, label) into it.

Readers memory-map the .bin, so a rank touches only the pages of the images its sampler gives it. Each
finished training shard also keeps its sums for the mean image and the RGB covariance (``.stats.pt``), so the
statistics come out of the same pass. Each file is written under a temporary name and renamed, so a second
run after an interruption skips the finished shards. ``meta.json`` is written last: its presence means done.
"""

from __future__ import annotations

import io
import json
import logging
import mmap
import multiprocessing
import os
import typing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import simplejpeg
import torch
from annotated_types import Interval
from filelock import FileLock
from PIL import Image
from torch.utils.data import get_worker_info

from alexnet_lab import compat
from alexnet_lab.data.layouts import Layout, load_rgb, read_split
from alexnet_lab.data.stats import StatsSums, save_stats
from alexnet_lab.data.transforms import IMAGE_SIZE, preprocess
from alexnet_lab.declare import PositiveInt, checked
from alexnet_lab.errors import UserError
from alexnet_lab.files import atomic_write

log = logging.getLogger(__name__)

META_FILE = "meta.json"
STATS_FILE = "stats.pt"
FORMAT = "alexnet-lab-shards/1"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class ShardJob:
    split: str
    number: int
    samples: list[tuple[str, int]]
    out: Path
    quality: int
    chroma: int

    @property
    def stem(self) -> Path:
        return self.out / f"{self.split}-{self.number:05d}"

    @property
    def files(self) -> list[Path]:
        names = [".jpg.bin", ".idx.npy"] + ([".stats.pt"] if self.split == "train" else [])
        return [self.stem.with_name(self.stem.name + n) for n in names]

    def done(self) -> bool:
        return all(f.is_file() for f in self.files)


CHROMA = {444: 0, 422: 1, 420: 2}  # our names -> PIL's subsampling codes
Chroma = Literal[420, 422, 444]
Quality = Annotated[int, Interval(ge=1, le=100)]
# The prepared JPEGs: quality 90 with 4:2:0 chroma, which decode much faster than 95 with 4:4:4 (docs/benchmarks.md)
QUALITY, CHROMA_DEFAULT = 90, typing.cast(Chroma, 420)


def encode_jpeg(pixels: torch.Tensor, quality: int = QUALITY, chroma: int = CHROMA_DEFAULT) -> bytes:
    """uint8 CHW -> JPEG bytes; ``chroma`` 420 halves the colour resolution both ways, as ImageNet's JPEGs do."""
    buf = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(
        buf, format="JPEG", quality=quality, subsampling=CHROMA[chroma]
    )
    return buf.getvalue()


def write_shard(job: ShardJob) -> int:
    """Prepare one shard, unless another run of src/prepare.py has (or is writing it: this one waits); returns
    how many images it holds."""
    with FileLock(job.stem.with_name(f".{job.stem.name}.lock")):
        if not job.done():
            _write_shard(job)
    return len(job.samples)


def _write_shard(job: ShardJob) -> None:
    rows, blobs, offset = [], [], 0
    sums = StatsSums() if job.split == "train" else None
    for path, label in job.samples:
        pixels = preprocess(load_rgb(path))
        if sums is not None:
            sums.add(pixels[None])
        data = encode_jpeg(pixels, job.quality, job.chroma)
        rows.append((offset, len(data), label))
        blobs.append(data)
        offset += len(data)
    bin_file, idx_file, *stats_file = job.files
    atomic_write(bin_file, lambda tmp: tmp.write_bytes(b"".join(blobs)))
    if sums is not None:
        atomic_write(stats_file[0], lambda tmp: torch.save(sums.state(), tmp))

    # the index is the shard's last file: with it, ShardJob.done() is true
    def write_idx(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would add ".npy" to a temp name
            np.save(f, np.asarray(rows, dtype=np.int64).reshape(-1, 3))

    atomic_write(idx_file, write_idx)


def shard_jobs(
    root: Path, out: Path, layout: str, shard_size: int, quality: int, chroma: int
) -> tuple[list[ShardJob], dict]:
    meta = {"format": FORMAT, "source": str(root), "shard_size": shard_size, "quality": quality, "chroma": chroma}
    jobs = []
    for split in SPLITS:
        index = read_split(root, split, layout)
        samples = index.samples
        for number, start in enumerate(range(0, len(samples), shard_size)):
            jobs.append(ShardJob(split, number, samples[start : start + shard_size], out, quality, chroma))
        meta[split] = {"images": len(samples), "shards": -(-len(samples) // shard_size)}
        if split == "train":
            meta["wnids"], meta["class_names"] = index.wnids, index.class_names
    return jobs, meta


@checked
def prepare(
    root: str | Path,
    out: str | Path,
    layout: Literal["auto", Layout] = "auto",
    shard_size: PositiveInt = 1000,
    quality: Quality = QUALITY,
    workers: PositiveInt | None = None,
    progress: bool = True,
    chroma: Chroma = CHROMA_DEFAULT,
) -> Path:
    """Prepare ``root`` (any supported layout) into ``out``; resumable, parallel over ``workers`` processes."""
    from tqdm import tqdm

    root, out = Path(root), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs, meta = shard_jobs(root, out, layout, shard_size, quality, chroma)
    check_settings(out, {key: meta[key] for key in SETTINGS})
    todo = [job for job in jobs if not job.done()]
    if len(todo) < len(jobs):
        log.info("%d of %d shards already prepared in %s: skipping them", len(jobs) - len(todo), len(jobs), out)
    workers = workers or os.cpu_count() or 1
    with tqdm(total=sum(len(j.samples) for j in todo), unit="img", disable=not progress, desc="prepare") as bar:
        if workers == 1:
            for job in todo:
                bar.update(write_shard(job))
        else:
            # spawn, not fork: a forked child of a process whose torch thread pool has started can deadlock
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(
                workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
            ) as pool:
                for count in pool.map(write_shard, todo):
                    bar.update(count)
    sums = StatsSums()
    for job in jobs:
        if job.split == "train":
            sums.merge(torch.load(job.files[2], weights_only=True))
    save_stats(sums.finish(), out / STATS_FILE)
    atomic_write(out / META_FILE, lambda tmp: tmp.write_text(json.dumps(meta, indent=1) + "\n"))
    return out


SETTINGS = ("source", "shard_size", "quality", "chroma")
SETTINGS_FILE = "settings.json"


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Shards of an interrupted run are kept only if this run would write them the same way."""
    file = out / SETTINGS_FILE
    with FileLock(out / f".{SETTINGS_FILE}.lock"):  # two runs started at once: the first writes the file
        if not file.is_file():
            file.write_text(json.dumps(settings, indent=1) + "\n")
            return
        earlier = json.loads(file.read_text())
        if changed := [f"{k}={earlier.get(k)!r} (now {v!r})" for k, v in settings.items() if earlier.get(k) != v]:
            raise UserError(
                f"{out} holds shards prepared with {', '.join(changed)}: prepare into a new out "
                f"directory, or rerun with the earlier settings"
            )


def is_prepared(root: Path) -> bool:
    return (root / META_FILE).is_file()


def read_meta(root: Path) -> dict[str, Any]:
    if not is_prepared(root):
        raise UserError(
            f"{root} holds no prepared shards ({META_FILE} is missing): run python src/prepare.py "
            f"source=DIR out={root}, or let it finish"
        )
    meta = json.loads((root / META_FILE).read_text())
    if meta.get("format") != FORMAT:
        raise UserError(f"{root / META_FILE} is format {meta.get('format')!r}, not {FORMAT!r}: prepare it again")
    return meta


class ShardReader:
    """Random access to a split's images: item i -> (JPEG bytes, label). Picklable; workers map lazily."""

    def __init__(self, root: str | Path, split: str) -> None:
        self.root, self.split = Path(root), split
        meta = read_meta(self.root)
        self.shards = meta[split]["shards"]
        self.wnids: list[str] = list(meta["wnids"])
        self.class_names: list[str] = list(meta["class_names"])
        index = [np.load(self.root / f"{split}-{k:05d}.idx.npy") for k in range(self.shards)]
        self.rows = np.concatenate([np.c_[np.full(len(ix), k), ix] for k, ix in enumerate(index)]).astype(np.int64)
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}

    def jpeg(self, i: int) -> tuple[np.ndarray, int]:
        shard, offset, length, label = self.rows[i].tolist()
        data = self._maps.get(shard)
        if data is None:
            with open(self.root / f"{self.split}-{shard:05d}.jpg.bin", "rb") as f:
                # a plain array over the map: slicing an np.memmap costs more than reading the bytes
                data = self._maps[shard] = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), np.uint8)
        return data[offset : offset + length], label


class PreparedDataset(torch.utils.data.Dataset):
    """A prepared split as the data module's datasets: item (index or (index, seed)) -> crop(s) and label, a whole
    batch at once (``__getitems__``), cut into shared memory with no per-image tensor (docs/benchmarks.md, "How
    the prepared loader works"); (N, 3, s, s), or (N, 10, 3, s, s) for ten crops, in channels-last memory.
    ``fast_dct``: libjpeg-turbo's fast integer IDCT (docs/benchmarks.md)."""

    def __init__(self, reader: ShardReader, transform: Any, fast_dct: bool) -> None:
        self.reader, self.transform, self.fast_dct = reader, transform, fast_dct
        self._buffer: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        batch = self.__getitems__([item])
        return {"image": batch["image"][0], "geometry": batch["geometry"][0], "label": int(batch["label"][0])}

    def _read(self, i: int) -> tuple[np.ndarray, int]:
        data, label = self.reader.jpeg(i)
        found = simplejpeg.decode_jpeg_header(data)[:2]
        if found != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"{self.reader.root}: {self.reader.split} image {i} is {found}, not the prepared "
                f"{IMAGE_SIZE}x{IMAGE_SIZE}: prepare the data again"
            )
        return data, label

    def __getitems__(self, items: list[int | tuple[int, int]]) -> dict[str, Any]:
        if self._buffer is None:
            self._buffer = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        buffer = self._buffer  # every decode refills the same pixels
        size, crops = self.transform.size, self.transform.count
        shape = (len(items), crops, size, size, 3)
        # in a worker, straight into shared memory: the DataLoader then hands it over without another copy
        batch = compat.shared_uint8(shape) if get_worker_info() is not None else torch.empty(shape, dtype=torch.uint8)
        out = batch.numpy()
        tables, labels = [], []
        for j, item in enumerate(items):
            i, seed = item if isinstance(item, tuple) else (item, None)
            data, label = self._read(i)
            simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=self.fast_dct, buffer=buffer)
            geometry = self.transform.geometry(IMAGE_SIZE, seed)
            for c, (top, left, _) in enumerate(geometry):
                np.copyto(out[j, c], buffer[top : top + size, left : left + size])
            tables.append([[top, left, int(flip)] for top, left, flip in geometry])
            labels.append(label)
        image, geometry = batch.movedim(-1, -3), torch.tensor(tables)
        if self.transform.mode != "ten":
            image, geometry = image[:, 0], geometry[:, 0]
        return {"image": image, "geometry": geometry, "label": torch.tensor(labels)}
