"""The one-off preparation into shards (src/prepare.py): round trip, resumability, and training from it."""

from __future__ import annotations

import io
import json
import logging
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
import torch
from PIL import Image
from torch.utils.data import DataLoader

from alexnet_lab.data import prepared as prep
from alexnet_lab.data.imagenet import ImageNetDataModule, collate
from alexnet_lab.data.layouts import BadImageError, load_rgb, read_split
from alexnet_lab.data.sampling import ResumableSampler
from alexnet_lab.data.stats import compute_stats, load_stats
from alexnet_lab.data.transforms import Crops, preprocess
from alexnet_lab.errors import UserError
from conftest import run_in_process
from sample_layouts import write_layout


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # every layout quirk of the sample (grayscale, CMYK, PNG bytes named .JPEG) goes through preparation too
    return write_layout(tmp_path_factory.mktemp("raw") / "raw", "kaggle", num_classes=3, train_per_class=7,
                        val_per_class=3)  # fmt: skip


@pytest.fixture(scope="module")
def shards(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # one process here; test_training_from_prepared_shards_learns prepares with two
    return prep.prepare(raw, tmp_path_factory.mktemp("prepared") / "out", shard_size=4, workers=1, progress=False)


def decode(data: np.ndarray | bytes) -> torch.Tensor:
    """JPEG bytes -> uint8 CHW RGB, as simplejpeg decodes them with its exact IDCT."""
    return torch.from_numpy(simplejpeg.decode_jpeg(data, colorspace="RGB")).permute(2, 0, 1)


def labels(reader: prep.ShardReader) -> list[int]:
    return [reader.jpeg(i)[1] for i in range(len(reader))]


def decoded(reader: prep.ShardReader, i: int) -> torch.Tensor:
    return decode(reader.jpeg(i)[0])


@pytest.mark.parametrize("split", ["train", "val"])
def test_shards_round_trip_labels_and_pixels(raw: Path, shards: Path, split: str) -> None:
    index = read_split(raw, split)
    reader = prep.ShardReader(shards, split)
    assert len(reader) == len(index.samples) and labels(reader) == [label for _, label in index.samples]
    for i, (path, _) in enumerate(index.samples):
        expected = preprocess(load_rgb(path))
        got = decoded(reader, i)
        assert got.shape == expected.shape == (3, 256, 256)
        # within JPEG tolerance: exactly the on-the-fly pixels after one JPEG round trip at the stored settings
        assert torch.equal(got, decode(prep.encode_jpeg(expected, prep.QUALITY, prep.CHROMA_DEFAULT))), path
        error = (got.float() - expected.float()).abs()
        psnr = 10 * torch.log10(255.0**2 / (error**2).mean())
        assert psnr > 28, (path, float(psnr))  # the sample's pixel noise is the worst case: 29.3 dB


@pytest.mark.parametrize("mode", ["train", "centre", "ten"])
def test_batched_loading_cuts_the_crops_of_the_decoded_image(shards: Path, mode: str) -> None:
    reader = prep.ShardReader(shards, "train")
    exact = prep.PreparedDataset(reader, Crops(mode), fast_dct=False)
    items = [(i, 1000 + i) for i in range(len(reader))] if mode == "train" else list(range(len(reader)))
    batch = exact.__getitems__(items)
    assert batch["image"].dtype == torch.uint8  # a quarter of float32's bytes to pin and move
    crops = 10 if mode == "ten" else 1
    assert batch["image"].shape == ((len(items), 10, 3, 224, 224) if crops == 10 else (len(items), 3, 224, 224))
    assert batch["label"].tolist() == labels(reader)
    images, geometry = batch["image"].reshape(-1, 3, 224, 224), batch["geometry"].reshape(-1, 3)
    for k, (top, left, _) in enumerate(geometry.tolist()):
        full = decoded(reader, k // crops)
        assert torch.equal(images[k], full[:, top : top + 224, left : left + 224]), (mode, k)  # cut, not mirrored
    if mode == "train":
        flips = geometry[:, 2].tolist()
        assert 0 < sum(flips) < len(flips), "the seeds should mirror some crops and not others"
        assert torch.equal(exact.__getitems__(items)["image"], batch["image"]), "a seed fixes its crop"
    fast = prep.PreparedDataset(reader, Crops(mode), fast_dct=True).__getitems__(items)
    assert torch.equal(fast["geometry"], batch["geometry"])
    difference = (fast["image"].float() - batch["image"].float()).abs()
    # on the sample's noisy images: a mean of 1.0 and a maximum of 4 levels
    assert 0 < difference.mean() < 2.0 and difference.max() <= 8, "the fast IDCT moves pixels a little"


def test_a_prepared_split_names_its_classes_gives_single_items_and_pickles_after_reading(
    raw: Path, shards: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source's wnids and class names; an item alone is its row of a batch; a copy pickled after reading
    (as a worker that is spawned, not forked, receives it) reads the same; an image of another size than
    prepared is named."""
    index = read_split(raw, "val")
    reader = prep.ShardReader(shards, "val")
    assert reader.wnids == index.wnids and reader.class_names == index.class_names
    dataset = prep.PreparedDataset(reader, Crops("centre"), fast_dct=False)
    batch = dataset.__getitems__([0, 4])  # maps the shards of both
    one = dataset[4]
    assert torch.equal(one["image"], batch["image"][1]) and torch.equal(one["geometry"], batch["geometry"][1])
    assert type(one["label"]) is int and one["label"] == index.samples[4][1]
    assert len(pickle.dumps(reader)) < (shards / "val-00000.jpg.bin").stat().st_size  # a copy maps them itself
    again = pickle.loads(pickle.dumps(dataset)).__getitems__([0, 4])
    assert all(torch.equal(batch[key], again[key]) for key in ("image", "geometry", "label"))
    small = np.frombuffer(simplejpeg.encode_jpeg(np.zeros((16, 8, 3), np.uint8)), np.uint8)
    monkeypatch.setattr(reader, "jpeg", lambda i: (small, 0))
    says = f"{shards}: val image 2 is (16, 8), not the prepared 256x256: prepare the data again"
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        dataset.__getitems__([2])


def test_shards_of_another_format_are_named_with_the_fix(shards: Path, tmp_path: Path) -> None:
    older = shutil.copytree(shards, tmp_path / "older")
    meta = json.loads((older / "meta.json").read_text())
    (older / "meta.json").write_text(json.dumps({**meta, "format": "alexnet-lab-shards/0"}))
    says = f"{older / 'meta.json'} is format 'alexnet-lab-shards/0', not 'alexnet-lab-shards/1': prepare it again"
    with pytest.raises(UserError, match=f"^{re.escape(says)}$"):
        prep.ShardReader(older, "train")


def test_a_worker_hands_over_the_same_batch(shards: Path) -> None:
    dataset = prep.PreparedDataset(prep.ShardReader(shards, "train"), Crops("train"), fast_dct=True)
    sampler = ResumableSampler(len(dataset), 1, 0, seed=3)
    loaders = [DataLoader(dataset, batch_size=8, sampler=sampler, num_workers=w, collate_fn=collate) for w in (0, 1)]
    in_process, from_worker = (list(loader) for loader in loaders)
    assert len(in_process) == len(from_worker) == 3
    for a, b in zip(in_process, from_worker, strict=True):
        assert all(torch.equal(a[key], b[key]) for key in ("image", "geometry", "label"))


def test_statistics_are_stored_beside_the_shards(raw: Path, shards: Path) -> None:
    stored = load_stats(shards / prep.STATS_FILE)
    direct = compute_stats([p for p, _ in read_split(raw, "train").samples])
    assert int(stored["images"]) == 21
    assert torch.allclose(stored["mean_image"], direct["mean_image"], atol=1e-3)
    assert torch.allclose(stored["rgb_covariance"], direct["rgb_covariance"], atol=1e-6)
    meta = json.loads((shards / prep.META_FILE).read_text())
    assert meta["train"] == {"images": 21, "shards": 6} and meta["val"] == {"images": 9, "shards": 3}


def test_an_interrupted_prepare_completes_without_redoing_finished_shards(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    real, written = prep.write_shard, []

    def interrupted_after_three(job: prep.ShardJob) -> int:
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(job.stem.name)
        return real(job)

    monkeypatch.setattr(prep, "write_shard", interrupted_after_three)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(raw, out, shard_size=4, workers=1, progress=False)
    assert not (out / prep.META_FILE).exists(), "an unfinished preparation must not look finished"
    # the shards' files (not the settings, nor the hidden lock files of concurrent runs)
    finished = {
        f.name: f.stat().st_mtime_ns for f in out.iterdir() if f.name != prep.SETTINGS_FILE and f.name[0] != "."
    }
    assert len(finished) == 3 * 3  # three training shards of three files each; nothing of the fourth
    with pytest.raises(UserError, match=r"quality=90 \(now 80\).*new out directory"):
        prep.prepare(raw, out, shard_size=4, quality=80, workers=1, progress=False)
    with pytest.raises(UserError, match=r"chroma=420 \(now 444\).*new out directory"):  # README: refused too
        prep.prepare(raw, out, shard_size=4, chroma=444, workers=1, progress=False)
    with pytest.raises(
        UserError,
        match=re.escape(
            f"{out} holds shards prepared with quality=90 (now 80), chroma=420 (now 444): prepare into a new"
        ),
    ):
        prep.prepare(raw, out, shard_size=4, quality=80, chroma=444, workers=1, progress=False)

    first = list(written)
    written.clear()
    monkeypatch.setattr(prep, "write_shard", lambda job: written.append(job.stem.name) or real(job))
    prep.prepare(raw, out, shard_size=4, workers=1, progress=False)
    assert len(written) == 9 - 3 and not set(first) & set(written), "finished shards were written again"
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in finished.items())
    assert labels(prep.ShardReader(out, "train")) == [label for _, label in read_split(raw, "train").samples]


def test_the_chosen_layout_quality_and_chroma_are_what_the_shards_hold(raw: Path, tmp_path: Path) -> None:
    """prepare.py's layout=kaggle on a copy that also holds ImageNet's archives (auto would take those),
    quality=95 and chroma=444 (the defaults are 90 and 4:2:0): each image is the on-the-fly pixels encoded so,
    its header says 4:4:4, and the out directory then refuses another source."""
    source = shutil.copytree(raw, tmp_path / "unpacked")
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
        (source / name).write_bytes(b"not read: layout=kaggle")
    out = tmp_path / "out"
    prep.prepare(source, out, layout="kaggle", shard_size=4, quality=95, chroma=444, workers=1, progress=False)
    for split in ("train", "val"):
        reader, samples = prep.ShardReader(out, split), read_split(raw, split).samples
        assert labels(reader) == [label for _, label in samples]
        for i, (path, _) in enumerate(samples):
            data = reader.jpeg(i)[0]
            assert simplejpeg.decode_jpeg_header(data)[3] == "444"
            pixels = preprocess(load_rgb(path)).permute(1, 2, 0).numpy()
            expected = io.BytesIO()  # PIL's own encoder at those settings (subsampling 0 is 4:4:4)
            Image.fromarray(pixels).save(expected, format="JPEG", quality=95, subsampling=0)
            assert torch.equal(decode(data), decode(expected.getvalue())), path
    with pytest.raises(UserError, match=re.escape(f"source='{source}' (now '{raw}')")):
        prep.prepare(raw, out, shard_size=4, quality=95, chroma=444, workers=1, progress=False)


def test_prepare_script_and_a_missing_source(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_in_process("prepare.py", f"source={raw}", f"out={out}", "workers=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"data=imagenet_prepared data.root={out}" in result.stdout
    nowhere = tmp_path / "nowhere"
    missing = run_in_process("prepare.py", f"source={nowhere}", f"out={out}", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    errors = [line for line in missing.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: source={nowhere} does not exist: set source=DIR")


def test_training_from_unprepared_folder_says_the_command_that_prepares_it(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    out.mkdir()
    result = run_in_process("train.py", "data=imagenet_prepared", f"data.root={out}", cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-2000:]
    # the command the error gives, run as given with the source filled in, prepares that folder
    command = errors[0].partition("run python ")[2].partition(", or")[0].replace("DIR", str(raw)).split()
    assert command[0] == "src/prepare.py" and f"out={out}" in command, errors
    done = run_in_process("prepare.py", *command[1:], "workers=1", cwd=tmp_path)
    assert done.returncode == 0 and prep.is_prepared(out), done.stderr[-2000:]


@pytest.mark.slow(45)
def test_training_from_prepared_shards_learns(tmp_path: Path) -> None:
    """The sample's 400 images, prepared, and a narrow net with BatchNorm, which learns in seconds (the paper's
    widths with LRN take minutes: test_default_run_learns_on_the_sample)."""
    raw = write_layout(tmp_path / "raw", "folders", num_classes=10, train_per_class=40, val_per_class=10)
    out = prep.prepare(raw, tmp_path / "prepared", shard_size=100, workers=2, progress=False)
    run_dir = tmp_path / "run"
    result = run_in_process("train.py", "experiment=smoke", "logger=csv", "data=imagenet_prepared", f"data.root={out}",
                        "data.sample=null",
                        "data.num_classes=10", "data.batch_size=32", "data.num_workers=2", "trainer.max_epochs=4",
                        "norm=bn", "init=kaiming", f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val/images"] == 100
    assert summary["val/top1_err"] < 0.5, summary  # chance: 0.9; 0.19 after 4 epochs when measured


def test_two_prepares_at_once_share_the_work_and_write_what_one_would(raw: Path, shards: Path,
                                                                      tmp_path: Path) -> None:  # fmt: skip
    """src/prepare.py started twice into one folder (two jobs of an array, say): both finish, each shard is
    written by one of them under its lock, and the folder holds what one run alone writes."""
    import multiprocessing

    out = tmp_path / "out"
    fork = multiprocessing.get_context("fork")
    settings = {"shard_size": 4, "workers": 1, "progress": False}
    runs = [fork.Process(target=prep.prepare, args=(raw, out), kwargs=settings) for _ in range(2)]
    try:
        for proc in runs:
            proc.start()
        for proc in runs:
            proc.join(120)
        assert [proc.exitcode for proc in runs] == [0, 0], "both finish, within the test's own time"
    finally:  # a run that failed or hangs on the lock must not outlive the test
        for proc in runs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert written == sorted(p.name for p in shards.iterdir() if not p.name.startswith("."))
    for name in written:
        if name.endswith((".bin", ".npy", ".json")):
            assert (out / name).read_bytes() == (shards / name).read_bytes(), name
    assert not [p for p in out.iterdir() if ".tmp-" in p.name], "no temp file left"


@pytest.mark.slow(30)
@pytest.mark.parametrize("data", ["imagenet", "imagenet_prepared", "sample"])
def test_the_smoke_preset_runs_on_any_imagenet_data(raw: Path, shards: Path, tmp_path: Path, data: str) -> None:
    """The CI smoke test on a user's own small ImageNet-layout subset, as typed: the preset sets only keys
    that every dataset has (it used to half-fill data.sample, which only the generated sample has)."""
    root = {"imagenet": [f"data.root={raw}", "data.num_classes=3"],
            "imagenet_prepared": [f"data.root={shards}", "data.num_classes=3"], "sample": []}[data]  # fmt: skip
    run_dir = tmp_path / "run"
    result = run_in_process("train.py", "experiment=smoke", "logger=csv", f"data={data}", *root,
                            "trainer.max_epochs=1", f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val/images"] == {"imagenet": 9, "imagenet_prepared": 9, "sample": 4 * 10}[data]


@pytest.mark.parametrize("source", ["raw", "prepared"])
@pytest.mark.parametrize(
    ("use", "test_crops", "mode"),
    [("train", 10, "train"), ("val", 10, "ten"), ("val", 1, "centre"), ("figure", 10, "centre")],
    ids=["train", "val-ten", "val-centre", "figure"],
)
def test_each_use_of_a_split_gets_its_crops_at_the_crop_size(
    raw: Path, shards: Path, source: str, use: str, test_crops: int, mode: str
) -> None:
    """ImageNetDataModule.dataset: a training item is section 4.1's random patch (its place and mirror from its
    augmentation seed), a validation item the centre crop or the ten crops (data.test_crops), a figure's the
    centre crop whatever test_crops says; each crop_size wide, cut from the file's 256x256 image or, from the
    prepared copy, from its JPEG decoded with the fast IDCT (data.fast_dct, the default)."""
    dm = ImageNetDataModule(root=str(raw if source == "raw" else shards), num_classes=3, num_workers=0,
                            test_crops=test_crops, crop_size=227)  # fmt: skip
    item = dm.dataset("val", use)[(1, 77) if use == "train" else 1]
    if source == "raw":
        full = preprocess(load_rgb(read_split(raw, "val").samples[1][0]))
    else:
        data = prep.ShardReader(shards, "val").jpeg(1)[0]
        full = torch.from_numpy(simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True)).permute(2, 0, 1)
        assert not torch.equal(full, decode(data)), "the fast IDCT's pixels differ from the exact one's here"
    geometry = Crops(mode, 227).geometry(256, 77)  # transforms' geometry, tested against section 4.1 on its own
    assert item["geometry"].reshape(-1, 3).tolist() == [[top, left, int(flip)] for top, left, flip in geometry]
    expected = torch.stack([full[:, top : top + 227, left : left + 227] for top, left, _ in geometry])
    assert torch.equal(item["image"].reshape(-1, 3, 227, 227), expected)
    assert item["image"].shape == ((10, 3, 227, 227) if mode == "ten" else (3, 227, 227))
    assert item["label"] == read_split(raw, "val").samples[1][1]


def test_skipped_images_are_named_as_they_come_and_counted_at_the_end(
    raw: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dm = ImageNetDataModule(root=str(raw), num_classes=3, num_workers=0)
    with caplog.at_level(logging.WARNING, logger="alexnet_lab"):
        dm.teardown("fit")
        assert caplog.messages == [], "nothing skipped, nothing said"
        dm.skipped(["a.JPEG"])
        dm.skipped(["b.JPEG", "c.JPEG"])
        dm.teardown("fit")
    assert caplog.messages == [
        "skipped unreadable image a.JPEG (1 so far)",
        "skipped unreadable image b.JPEG (2 so far)",
        "skipped unreadable image c.JPEG (3 so far)",
        "data: skipped 3 unreadable files, each named above",
    ]


@pytest.mark.parametrize("skip", [False, True])
def test_an_unreadable_file_stops_the_split_or_is_skipped_as_data_skip_bad_images_says(
    raw: Path, tmp_path: Path, skip: bool
) -> None:
    root = shutil.copytree(raw, tmp_path / "raw")
    bad = read_split(root, "val").samples[1][0]
    Path(bad).write_bytes(Path(bad).read_bytes()[:2000])
    dataset = ImageNetDataModule(root=str(root), num_classes=3, num_workers=0, skip_bad_images=skip).dataset(
        "val", "val"
    )
    if skip:
        assert dataset[1] == {"skipped": bad} and dataset[0]["image"].shape == (3, 224, 224)
        dm = ImageNetDataModule(root=str(root), num_classes=3, num_workers=0, skip_bad_images=True, batch_size=9)
        batch = next(iter(dm.val_dataloader()))  # the whole split: the loader's batch names the file it lacks
        assert batch["skipped"] == [bad] and batch["image"].shape == (8, 3, 224, 224)
    else:
        with pytest.raises(BadImageError, match=re.escape(bad)):
            dataset[1]
