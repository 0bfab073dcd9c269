"""The one-off preparation into shards (src/prepare.py): round trip, resumability, and training from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from alexnet_lab.data import prepared as prep
from alexnet_lab.data.layouts import load_rgb, read_split
from alexnet_lab.data.sample import write_layout
from alexnet_lab.data.stats import compute_stats, load_stats
from alexnet_lab.data.transforms import preprocess
from conftest import run_script


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # every layout quirk of the sample (grayscale, CMYK, PNG bytes named .JPEG) goes through preparation too
    return write_layout(tmp_path_factory.mktemp("raw") / "raw", "kaggle", num_classes=3, train_per_class=7,
                        val_per_class=3)  # fmt: skip


@pytest.fixture(scope="module")
def shards(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prep.prepare(raw, tmp_path_factory.mktemp("prepared") / "out", shard_size=4, workers=2, progress=False)


@pytest.mark.parametrize("split", ["train", "val"])
def test_shards_round_trip_labels_and_pixels(raw: Path, shards: Path, split: str) -> None:
    index = read_split(raw, split)
    reader = prep.ShardReader(shards, split)
    assert len(reader) == len(index.samples) and reader.labels == [label for _, label in index.samples]
    for i, (path, _) in enumerate(index.samples):
        expected = preprocess(load_rgb(path)).float()
        got, _ = reader.image(i)
        assert got.shape == expected.shape == (3, 256, 256)
        error = (got.float() - expected).abs()
        # re-encoded at JPEG quality 95 with 4:4:4 chroma; the sample's noise is the worst case (up to ~3.2)
        assert error.mean() < 4.0, (path, float(error.mean()))
        psnr = 10 * torch.log10(255.0**2 / (error**2).mean())
        assert psnr > 30, (path, float(psnr))


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
    finished = {f.name: f.stat().st_mtime_ns for f in out.iterdir()}
    assert len(finished) == 3 * 3  # three training shards of three files each; nothing of the fourth

    first = list(written)
    written.clear()
    monkeypatch.setattr(prep, "write_shard", lambda job: written.append(job.stem.name) or real(job))
    prep.prepare(raw, out, shard_size=4, workers=1, progress=False)
    assert len(written) == 9 - 3 and not set(first) & set(written), "finished shards were written again"
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in finished.items())
    assert prep.ShardReader(out, "train").labels == [label for _, label in read_split(raw, "train").samples]


def test_prepare_script_and_a_missing_source(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_script("prepare.py", f"source={raw}", f"out={out}", "workers=1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"data=imagenet_prepared data.root={out}" in result.stdout
    missing = run_script("prepare.py", f"source={tmp_path / 'nowhere'}", f"out={out}", cwd=tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "does not exist" in missing.stderr


def test_training_from_prepared_shards_learns(tmp_path: Path) -> None:
    """The sample's 400 images, prepared, and a narrow net with BatchNorm, which learns in seconds (the paper's
    widths with LRN take minutes: test_default_run_learns_on_the_sample)."""
    raw = write_layout(tmp_path / "raw", "folders", num_classes=10, train_per_class=40, val_per_class=10)
    out = prep.prepare(raw, tmp_path / "prepared", shard_size=100, workers=2, progress=False)
    run_dir = tmp_path / "run"
    result = run_script("train.py", "experiment=smoke", "logger=csv", "data=imagenet_prepared", f"data.root={out}",
                        "data.num_classes=10", "data.batch_size=32", "data.num_workers=2", "trainer.max_epochs=5",
                        "norm=bn", "init=kaiming", f"hydra.run.dir={run_dir}", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val/images"] == 100
    assert summary["val/top1_err"] < 0.5, summary  # chance: 0.9
