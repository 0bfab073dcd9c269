"""The data module: on-disk layouts, the sample's quirks, preprocessing, augmentations, sharding."""

from __future__ import annotations

import functools
import hashlib
import logging
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import imagenet as tv_imagenet

from alexnet_lab.data import small
from alexnet_lab.data.base import ClassificationData
from alexnet_lab.data.generated import CLASSES, QUIRKS, generate
from alexnet_lab.data.imagenet import ImageDataset, ImageNetDataModule, collate
from alexnet_lab.data.layouts import LAYOUTS, BadImageError, detect_layout, load_rgb, read_split
from alexnet_lab.data.sampling import ResumableLoader, ResumableSampler, mix, seed_step
from alexnet_lab.data.stats import compute_stats, subset
from alexnet_lab.data.transforms import (
    Crops,
    DeviceNormalizer,
    lighting_offset,
    preprocess,
    train_geometry,
)
from alexnet_lab.errors import UserError
from sample_layouts import write_layout

SMALL = {"num_classes": 4, "train_per_class": 5, "val_per_class": 3, "seed": 1}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("layouts")
    return {layout: write_layout(base / layout, layout, **SMALL) for layout in LAYOUTS}


@pytest.fixture
def real_md5_of_generated_archives(monkeypatch: pytest.MonkeyPatch, layouts: dict[str, Path]) -> None:
    """torchvision checks the archives' md5 against the real ImageNet files. Generated archives cannot match,
    so the expected sums become those of the generated files: the integrity check itself still runs."""
    root = layouts["archives"]
    patched = {
        split: (name, hashlib.md5((root / name).read_bytes()).hexdigest())
        for split, (name, _) in tv_imagenet.ARCHIVE_META.items()
    }
    monkeypatch.setattr(tv_imagenet, "ARCHIVE_META", patched)


def mapping(root: Path, split: str) -> dict[str, int]:
    return {Path(p).name: label for p, label in read_split(root, split).samples}


@pytest.mark.usefixtures("real_md5_of_generated_archives")
@pytest.mark.parametrize("split", ["train", "val"])
def test_every_layout_gives_the_same_file_to_label_mapping(layouts: dict[str, Path], split: str) -> None:
    assert [detect_layout(layouts[name]) for name in LAYOUTS] == list(LAYOUTS)
    folders = mapping(layouts["folders"], split)
    assert len(folders) == SMALL["num_classes"] * SMALL[f"{split}_per_class"]
    assert mapping(layouts["archives"], split) == folders
    assert mapping(layouts["kaggle"], split) == folders
    # labels are positions of the sorted wnids, whatever the layout: the generator says which class it drew
    # each picture from (val files are named by number only, so their labels come from the devkit or Kaggle's csv)
    wnids = sorted(CLASSES)[: SMALL["num_classes"]]
    train, val = generate(**SMALL)
    assert folders == {image.name: wnids.index(image.wnid) for image in (train if split == "train" else val)}


@pytest.mark.usefixtures("real_md5_of_generated_archives")
def test_torchvision_imagenet_agrees_on_the_archives(layouts: dict[str, Path]) -> None:
    ours = mapping(layouts["folders"], "val")
    theirs = tv_imagenet.ImageNet(str(layouts["archives"]), split="val")
    assert {Path(p).name: t for p, t in theirs.samples} == ours
    assert theirs.wnids == sorted(CLASSES)[: SMALL["num_classes"]]


@pytest.mark.usefixtures("real_md5_of_generated_archives")
@pytest.mark.parametrize("split", ["train", "val"])
def test_class_wnids_and_names_in_every_layout(layouts: dict[str, Path], split: str) -> None:
    wnids = sorted(CLASSES)[: SMALL["num_classes"]]
    for layout in LAYOUTS:
        index = read_split(layouts[layout], split)
        assert index.wnids == wnids, layout
        assert index.class_names == [CLASSES[w] for w in wnids], layout


@pytest.mark.parametrize("layout", ["folders", "kaggle"])
def test_an_empty_training_class_folder_keeps_its_label_and_the_others_theirs(
    tmp_path: Path, layouts: dict[str, Path], layout: str
) -> None:
    """A class folder with no image (a partial copy) is still a class: the labels are positions among the training
    folders, so every other image keeps its label, and the val images of that class theirs."""
    root = tmp_path / layout
    shutil.copytree(layouts[layout], root)
    wnids = sorted(CLASSES)[: SMALL["num_classes"]]
    train = root / ("train" if layout == "folders" else "ILSVRC/Data/CLS-LOC/train")
    for image in (train / wnids[1]).iterdir():
        image.unlink()
    index = read_split(root, "train")
    assert index.wnids == wnids and len(index.samples) == (SMALL["num_classes"] - 1) * SMALL["train_per_class"]
    assert all(label == wnids.index(Path(path).parent.name) != 1 for path, label in index.samples)
    assert {label for _, label in read_split(root, "val").samples} == set(range(SMALL["num_classes"]))


def test_a_kaggle_val_image_without_a_row_in_the_csv_is_named(tmp_path: Path, layouts: dict[str, Path]) -> None:
    root = tmp_path / "kaggle"
    shutil.copytree(layouts["kaggle"], root)
    stray = root / "ILSVRC" / "Data" / "CLS-LOC" / "val" / "ILSVRC2012_val_99999999.JPEG"
    shutil.copy(next(stray.parent.iterdir()), stray)
    csv = root / "LOC_val_solution.csv"
    says = re.escape(f"{stray} has no row in {csv}: the file does not match the images")
    with pytest.raises(UserError, match=f"^{says}$"):
        read_split(root, "val")


# what each layout holds, as the errors about a data root say it (README: "Data")
LAYOUT_HELP = (
    "expected one of: (1) folders: ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG; (2) archives: "
    "ROOT/{ILSVRC2012_img_train.tar,ILSVRC2012_img_val.tar,ILSVRC2012_devkit_t12.tar.gz}; (3) kaggle: "
    "ROOT/ILSVRC/Data/CLS-LOC/{train/<wnid>,val}, ROOT/LOC_val_solution.csv, ROOT/LOC_synset_mapping.txt"
)


def test_a_root_that_holds_no_whole_layout_is_refused_naming_the_three_layouts(tmp_path: Path) -> None:
    """A missing root, half of a layout (Kaggle's folders without its csv, train/ without val/), a train/
    without class folders, classes without images, a layout name that does not exist: each one whole message."""
    nowhere = tmp_path / "nowhere"
    with pytest.raises(UserError) as error:
        detect_layout(nowhere)
    assert (
        str(error.value) == f"data.root={nowhere} does not exist: set data.root=DIR (or IMAGENET_ROOT); {LAYOUT_HELP}"
    )
    (tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "train").mkdir(parents=True)
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError) as error:
        detect_layout(tmp_path)
    assert str(error.value) == f"data.root={tmp_path} holds no ImageNet layout I know; {LAYOUT_HELP}"
    (tmp_path / "val").mkdir()
    for refused in (detect_layout, lambda root: read_split(root, "train"), lambda root: read_split(root, "val")):
        with pytest.raises(UserError) as error:
            refused(tmp_path)
        assert str(error.value) == f"{tmp_path / 'train'} has no class folders; {LAYOUT_HELP}"
    (tmp_path / "train" / "n01440764").mkdir()
    with pytest.raises(UserError) as error:
        read_split(tmp_path, "val")
    assert str(error.value) == f"no val images found under {tmp_path} (folders layout); {LAYOUT_HELP}"
    with pytest.raises(UserError) as error:
        read_split(tmp_path, "val", layout="zip")
    assert str(error.value) == "unknown data.layout='zip': use auto, folders, archives, kaggle"
    with pytest.raises(UserError, match="does not exist"):
        ImageNetDataModule(root=str(nowhere))
    with pytest.raises(UserError, match="IMAGENET_ROOT"):
        ImageNetDataModule(root=None)


@pytest.mark.parametrize("layout", ["folders", "kaggle"])
def test_a_training_folder_without_class_folders_is_refused_when_the_data_module_is_made(
    tmp_path: Path, layout: str
) -> None:
    """Refused at start-up, when src/train.py makes the data module, not once the Trainer has started: the
    train folder of a whole layout that holds no class folder (an unpacked archive's images, or none)."""
    train = tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "train" if layout == "kaggle" else tmp_path / "train"
    (train.parent / "val").mkdir(parents=True)
    train.mkdir()
    (train / "n01440764_1.JPEG").write_bytes(b"an image outside a class folder")
    (tmp_path / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n")
    with pytest.raises(UserError) as error:
        ImageNetDataModule(root=str(tmp_path), num_workers=0)
    assert str(error.value) == f"{train} has no class folders; {LAYOUT_HELP}"


def test_a_class_without_a_name_in_the_synset_mapping_is_named_by_its_wnid(tmp_path: Path, layouts: dict[str, Path]
                                                                            ) -> None:  # fmt: skip
    root = shutil.copytree(layouts["folders"], tmp_path / "folders")
    wnids = sorted(CLASSES)[: SMALL["num_classes"]]
    mapping_file = root / "LOC_synset_mapping.txt"
    mapping_file.write_text("".join(f"{w} {CLASSES[w]}\n" for w in wnids[1:]))
    assert read_split(root, "train").class_names == [wnids[0]] + [CLASSES[w] for w in wnids[1:]]
    mapping_file.unlink()
    assert read_split(root, "train").class_names == wnids


def test_quirk_files_decode_to_rgb(layouts: dict[str, Path]) -> None:
    wnids = sorted(CLASSES)
    formats = {}
    for (cls, i), quirk in QUIRKS.items():
        path = layouts["folders"] / "train" / wnids[cls] / f"{wnids[cls]}_{i}.JPEG"
        with Image.open(path) as raw:
            formats[quirk] = (raw.format, raw.mode)
        image = load_rgb(str(path))
        assert image.mode == "RGB" and preprocess(image).shape == (3, 256, 256)
    assert formats == {"grayscale": ("JPEG", "L"), "cmyk": ("JPEG", "CMYK"), "png": ("PNG", "RGB")}


def test_truncated_jpeg_raises_with_its_path_or_is_counted_when_skipping(layouts: dict[str, Path],
                                                                         tmp_path: Path) -> None:  # fmt: skip
    good = next((layouts["folders"] / "val").rglob("*.JPEG"))
    bad = tmp_path / "n01440764_999.JPEG"
    bad.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(BadImageError) as error:
        load_rgb(str(bad))
    assert re.fullmatch(f"cannot decode image {re.escape(str(bad))}: .+; replace the file, or set "
                        "data.skip_bad_images=true to skip and count unreadable files", str(error.value))  # fmt: skip
    samples = [(str(good), 0), (str(bad), 1)]
    with pytest.raises(BadImageError, match="skip_bad_images=true"):
        ImageDataset(samples, Crops("centre"))[1]
    skipping = ImageDataset(samples, Crops("centre"), skip_bad=True)
    batch = collate([skipping[0], skipping[1]])
    assert batch["skipped"] == [str(bad)] and batch["image"].shape == (1, 3, CROP, CROP)


# Section 4.1: 224x224 patches of the 256x256 images: offsets 0..32 on each axis, each independently.
CROP, LAST = 224, 256 - 224


def test_crops_and_flips() -> None:
    torch.manual_seed(0)
    image = torch.randint(0, 256, (3, 256, 256), dtype=torch.uint8)
    offsets, flips = [], set()
    for seed in range(3000):
        out = Crops("train", CROP)(image, seed)
        crop, (top, left, flip) = out["image"], out["geometry"]
        assert crop.shape == (3, CROP, CROP) and 0 <= top <= LAST and 0 <= left <= LAST
        assert torch.equal(crop, image[:, top : top + CROP, left : left + CROP]), (
            "cut, not mirrored: the device mirrors"
        )
        offsets.append((int(top), int(left)))
        flips.add(int(flip))
    tops, lefts = {t for t, _ in offsets}, {left for _, left in offsets}
    assert tops == lefts == set(range(LAST + 1)), "every offset, the last (32) too, on both axes"
    # independent axes: a diagonal-only sampler (left == top) would fail; 1/33 of pairs are diagonal by chance
    assert sum(t == left for t, left in offsets) < 2 * len(offsets) / (LAST + 1)
    assert flips == {0, 1}
    out = Crops("centre", CROP)(image)
    crop, geometry = out["image"], out["geometry"]
    assert geometry.tolist() == [16, 16, 0] and torch.equal(crop, image[:, 16:240, 16:240])
    out = Crops("ten", CROP)(image)
    crops, geometry = out["image"], out["geometry"]
    assert crops.shape == (10, 3, CROP, CROP)
    corners = {(0, 0), (0, LAST), (LAST, 0), (LAST, LAST), (16, 16)}  # the four corners and the centre
    assert {(t, left) for t, left, _ in geometry.tolist()} == corners
    assert [f for *_, f in geometry.tolist()] == [0] * 5 + [1] * 5
    for k in range(5):
        assert torch.equal(crops[k + 5], crops[k])  # each reflection is its patch, mirrored on the device
    assert Crops("centre", 227)(image)["geometry"].tolist() == [14, 14, 0]  # (256 - 227) / 2 rounded
    far = 256 - 227  # Caffe's crops: the ten at 227 have their corners at 29 and their centre at 14
    assert [(t, left) for t, left, _ in Crops("ten", 227).geometry()][:5] == [(0, 0), (0, far), (far, 0), (far, far),
                                                                              (14, 14)]  # fmt: skip


def test_training_crops_are_uniform_and_mirrored_half_the_time() -> None:
    """Section 4.1: a patch at a random position, reflected with probability 1/2. Over n seeds the counts are
    binomial; each bound is 5 standard deviations, so a fair sampler fails it about once in 1.7 million runs."""
    n, positions = 6600, LAST + 1
    geometries = [Crops("train", CROP).geometry(256, seed)[0] for seed in range(n)]
    flips = sum(flip for *_, flip in geometries)
    assert abs(flips - n / 2) < 5 * (n / 4) ** 0.5, f"{flips} of {n} mirrored"  # a quarter: 1650
    for axis in (0, 1):
        counts = torch.bincount(torch.tensor([g[axis] for g in geometries]), minlength=positions)
        p = 1 / positions
        assert len(counts) == positions
        assert (counts - n * p).abs().max() < 5 * (n * p * (1 - p)) ** 0.5, counts.tolist()


def test_preprocess_rescales_the_short_side_then_takes_the_centre() -> None:
    wide = Image.new("RGB", (512, 300), (10, 20, 30))
    wide.paste((250, 0, 0), (0, 0, 100, 300))  # a red band on the left edge is cut away by the centre crop
    out = preprocess(wide)
    assert out.shape == (3, 256, 256)
    assert out[0, :, 5].float().mean() < 50  # scaled width 437: the first 90 columns are cropped


def reference_normalize(image: torch.Tensor, mean_image: torch.Tensor, geometry: tuple[int, int, bool],
                        offset: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """The paper's order on one 256x256 image, in float: subtract the mean image, add the lighting ``offset`` (RGB,
    0..255 units) to every pixel, then cut the crop at (top, left) and mirror it if asked."""
    centred = image.float() - mean_image + (0 if offset is None else offset[:, None, None])
    top, left, flip = geometry
    crop = centred[:, top : top + CROP, left : left + CROP]
    return crop.flip(-1) if flip else crop


def test_device_normalizer_equals_the_cpu_reference() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8)
    mean_image = torch.rand(3, 256, 256) * 255
    eigvecs, _ = torch.linalg.qr(torch.randn(3, 3))
    eigvals = torch.tensor([0.2, 0.02, 0.004])
    normalizer = DeviceNormalizer(mean_image, eigvals, eigvecs)
    geometry = torch.tensor([[0, 0, 0], [29, 3, 1], [14, 14, 0], [7, 29, 1]])
    crops = torch.stack(
        [img[:, t : t + CROP, left : left + CROP] for img, (t, left, _) in zip(images, geometry.tolist(), strict=True)]
    )  # as the workers cut them: not mirrored
    alpha = torch.randn(4, 3) * 0.1
    got = normalizer(crops, geometry, lighting=True, alpha=alpha)
    offsets = 255 * lighting_offset(alpha, eigvals, eigvecs)
    for img, g, offset, out in zip(images, geometry, offsets, got, strict=True):
        assert torch.allclose(out, reference_normalize(img, mean_image, tuple(g.tolist()), offset=offset), atol=1e-3)
    no_light = normalizer(crops, geometry)
    assert torch.allclose(no_light[1], reference_normalize(images[1], mean_image, (29, 3, True)), atol=1e-3)
    ten = normalizer(crops[None].expand(2, 4, 3, CROP, CROP), geometry[None].expand(2, 4, 3))
    assert torch.allclose(ten[1], no_light)


def test_pca_lighting_offsets_have_the_implied_covariance() -> None:
    torch.manual_seed(0)
    eigvecs, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    eigvals = torch.tensor([0.2175, 0.0188, 0.0045], dtype=torch.float64)
    normalizer = DeviceNormalizer(torch.zeros(3, 256, 256), eigvals, eigvecs, lighting_std=0.1)
    n = 20000
    zeros = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    out = normalizer(zeros, torch.zeros(n, 3, dtype=torch.long), lighting=True).double() / 255
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-5)  # one offset per image
    offsets = out[:, :, 0, 0]
    # offset = P diag(lambda) alpha, alpha ~ N(0, 0.1^2 I)  =>  Cov = 0.01 P diag(lambda^2) P^T
    implied = 0.1**2 * eigvecs @ torch.diag(eigvals**2) @ eigvecs.T
    sample = torch.cov(offsets.T)
    assert torch.allclose(sample, implied, atol=0.03 * implied.abs().max())
    assert offsets.mean(0).abs().max() < 4 * (0.1 * eigvals.max()) / n**0.5
    # the square-root reading: offset = P diag(sqrt(lambda)) alpha  =>  Cov = 0.01 P diag(lambda) P^T, which is
    # 0.01 times the pixels' own RGB covariance
    stdevs = DeviceNormalizer(torch.zeros(3, 256, 256), eigvals, eigvecs, lighting_std=0.1, pca_lighting="stdevs")
    offsets = stdevs(zeros, torch.zeros(n, 3, dtype=torch.long), lighting=True).double()[:, :, 0, 0] / 255
    covariance = eigvecs @ torch.diag(eigvals) @ eigvecs.T
    assert torch.allclose(torch.cov(offsets.T), 0.1**2 * covariance, atol=0.03 * 0.01 * covariance.abs().max())


def test_statistics_are_the_mean_image_and_rgb_covariance(layouts: dict[str, Path]) -> None:
    paths = [p for p, _ in read_split(layouts["folders"], "train").samples][:6]
    stats = compute_stats(paths, batch_size=4)
    images = torch.stack([preprocess(load_rgb(p)) for p in paths]).double()
    assert torch.allclose(stats["mean_image"].double(), images.mean(0), atol=1e-3)
    pixels = (images / 255).permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.allclose(stats["rgb_covariance"].double(), torch.cov(pixels, correction=0), atol=1e-6)
    p, lam = stats["eigvecs"].double(), stats["eigvals"].double()
    assert torch.allclose(p @ torch.diag(lam) @ p.T, stats["rgb_covariance"].double(), atol=1e-6)
    assert lam[0] >= lam[1] >= lam[2]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_statistics_with_skip_bad_images_are_those_of_the_readable_images(
    tmp_path: Path, layouts: dict[str, Path], num_workers: int, caplog: pytest.LogCaptureFixture
) -> None:
    """data.skip_bad_images reaches the statistics: unreadable files (here a whole batch of them, and one beside
    readable ones) are left out and counted in a warning; without it, the first stops the computation."""
    good = [p for p, _ in read_split(layouts["folders"], "train").samples][:5]
    bad = [tmp_path / f"bad{i}.JPEG" for i in range(4)]
    for path in bad:
        path.write_bytes(b"not a JPEG")
    paths = [str(bad[0]), str(bad[1]), good[0], good[1], *good[2:], str(bad[2]), str(bad[3])]  # batches of 2
    with caplog.at_level(logging.WARNING, logger="alexnet_lab"):
        skipped = compute_stats(paths, num_workers=num_workers, batch_size=2, skip_bad=True)
    readable = compute_stats(good, batch_size=2)
    assert int(skipped["images"]) == 5 and all(torch.allclose(skipped[k], readable[k]) for k in readable)
    assert caplog.messages == ["statistics: 4 unreadable files skipped (data.skip_bad_images)"]
    with pytest.raises(BadImageError, match=re.escape(str(bad[0]))):
        compute_stats(paths, num_workers=num_workers, batch_size=2)


def test_statistics_from_at_most_n_images_take_every_kth_and_count_them(layouts: dict[str, Path]) -> None:
    """data.stats_max_images: every k-th training image (k = size / n, so every class is in), and the
    statistics say how many they are from; none at all is an error."""
    assert subset(list(range(10)), 4) == [0, 2, 5, 7]  # int(i * 2.5)
    assert subset(list(range(10)), 10) == subset(list(range(10)), 11) == subset(list(range(10)), None) == list(
        range(10))  # fmt: skip
    paths = [p for p, _ in read_split(layouts["folders"], "train").samples]
    stats = compute_stats(subset(paths, 7), batch_size=3)
    assert int(stats["images"]) == 7
    with pytest.raises(ValueError, match="^no training images to compute the statistics from$"):
        compute_stats([])


def test_the_datamodule_computes_its_statistics_from_the_given_layout_and_at_most_n_images(
    tmp_path: Path, layouts: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A copy with ImageNet's archives beside the folders unpacked from them is read as data.layout says
    (auto would take the archives), and data.stats_max_images=7 computes the statistics from 7 of the 20
    training images, as the log says."""
    root = tmp_path / "unpacked"
    shutil.copytree(layouts["folders"], root)
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"):
        (root / name).write_bytes(b"not read: data.layout=folders")
    assert detect_layout(root) == "archives"
    dm = ImageNetDataModule(root=str(root), layout="folders", num_classes=4, num_workers=0, stats_max_images=7)
    with caplog.at_level(logging.INFO, logger="alexnet_lab"):
        dm.prepare_data()
    assert int(torch.load(tmp_path / "unpacked-stats.pt", weights_only=True)["images"]) == 7
    assert "computing the training-set mean and RGB covariance from 7 images" in caplog.messages
    assert dm.split("train").samples == [
        (str(root / Path(path).relative_to(layouts["folders"])), label)
        for path, label in read_split(layouts["folders"], "train").samples
    ], "the training split is read from the folders too"


def test_statistics_summed_in_parts_and_merged_equal_one_sum() -> None:
    """prepare.py sums each shard apart and merges the sums: the same statistics as one pass over all images,
    with batches of any size (here 2 and 5, neither the 3 channels)."""
    from alexnet_lab.data.stats import StatsSums

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (7, 3, 256, 256), dtype=torch.uint8, generator=g)
    whole, first, second = StatsSums(), StatsSums(), StatsSums()
    whole.add(images)
    first.add(images[:2])
    second.add(images[2:])
    merged = StatsSums()
    merged.merge(first.state())
    merged.merge(second.state())
    for stats in (whole.finish(), merged.finish()):
        assert int(stats["images"]) == 7
        assert torch.allclose(stats["mean_image"].double(), images.double().mean(0), atol=1e-4)
        pixels = (images.double() / 255).permute(1, 0, 2, 3).reshape(3, -1)
        assert torch.allclose(stats["rgb_covariance"].double(), torch.cov(pixels, correction=0), atol=1e-6)


def test_statistics_sums_stay_exact_at_imagenets_scale() -> None:
    """1.28 million images put the sums near 2^28 (the mean image's, in 0..255 levels) and 2^36 (a channel's
    [0, 1] pixels): float32 would round away what a further image adds, float64 keeps it."""
    from alexnet_lab.data.stats import StatsSums

    sums = StatsSums()
    scale = 2.0**36
    big = {
        "image_sum": torch.full((3, 256, 256), 2.0**28, dtype=torch.float64),
        "pixel_sum": torch.full((3,), scale, dtype=torch.float64),
        "outer_sum": torch.full((3, 3), scale, dtype=torch.float64),
        "images": torch.tensor(1_280_000),
    }
    sums.merge(big)
    sums.add(torch.ones(1, 3, 256, 256, dtype=torch.uint8))  # one more image, every pixel 1 level
    assert sums.image_sum.dtype == torch.float64 and torch.all(sums.image_sum - 2.0**28 == 1)  # in float64
    # the image's 256 x 256 pixels, each 1 / 255 (pixel_sum) and 1 / 255^2 (outer_sum)
    assert torch.allclose(sums.pixel_sum - scale, torch.full((3,), 256**2 / 255, dtype=torch.float64), atol=1e-3)
    assert torch.allclose(sums.outer_sum - scale, torch.full((3, 3), 256**2 / 255**2, dtype=torch.float64), atol=1e-3)
    assert sums.images == 1_280_001


def test_a_divisor_divides_the_centred_pixels_per_channel() -> None:
    # a net whose weights expect standardised images (model=torchvision_alexnet): (pixel - mean) / std
    mean = torch.full((3, 256, 256), 20.0)
    normalizer = DeviceNormalizer(mean, torch.ones(3), torch.eye(3), divisor=torch.tensor([2.0, 4.0, 8.0]))
    images = torch.full((2, 3, 224, 224), 100, dtype=torch.uint8)
    out = normalizer(images, torch.tensor([[16, 16, 0], [0, 32, 1]]))
    assert torch.allclose(out[:, :, 0, 0], torch.tensor([[40.0, 20.0, 10.0]] * 2))  # (100 - 20) / divisor


def test_a_crop_without_a_seed_comes_from_torchs_generator() -> None:
    """Crops drawn where no sampler hands a seed: reproducible under torch.manual_seed, and spread over the
    33 x 33 x 2 possible crops (2,000 uniform draws from them give about 1,300 distinct ones)."""
    torch.manual_seed(1)
    first = [train_geometry() for _ in range(2000)]
    torch.manual_seed(1)
    assert [train_geometry() for _ in range(2000)] == first
    assert len(set(first)) > 1000


def test_an_unknown_crop_mode_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="mode='tens' is not allowed: Input should be 'train', 'centre' or 'ten'"):
        Crops("tens")  # type: ignore[arg-type]


@pytest.mark.parametrize("width, height", [(600, 400), (400, 700)])
def test_preprocess_downsamples_as_pils_antialiased_bilinear_resize(width: int, height: int) -> None:
    """Section 2's down-sampling, against PIL's bilinear resize of the short side to 256 (which always averages
    over the source pixels each output pixel covers) then its central patch: within one intensity level. A
    resize that samples instead of averaging differs by about 20 levels on average on noise."""
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    scale = 256 / min(width, height)
    resized = np.asarray(image.resize((round(width * scale), round(height * scale)), Image.Resampling.BILINEAR))
    top, left = (resized.shape[0] - 256) // 2, (resized.shape[1] - 256) // 2
    expected = torch.from_numpy(resized[top : top + 256, left : left + 256].copy()).permute(2, 0, 1)
    assert (preprocess(image).int() - expected.int()).abs().max() <= 1


def test_without_lighting_the_normalizer_draws_no_random_numbers() -> None:
    """lighting_std 0 (the no-lighting ablation) centres the crops and leaves torch's generator where it was."""
    normalizer = DeviceNormalizer(torch.full((3, 256, 256), 20.0), torch.ones(3), torch.eye(3), lighting_std=0.0)
    images = torch.full((2, 3, 224, 224), 100, dtype=torch.uint8)
    state = torch.get_rng_state()
    out = normalizer(images, torch.tensor([[0, 0, 0], [32, 32, 1]]), lighting=True)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(out, torch.full((2, 3, 224, 224), 80.0))


def test_an_unknown_pca_lighting_is_refused_by_name() -> None:
    with pytest.raises(
        ValueError, match="pca_lighting='stdev' is not allowed: Input should be 'eigenvalues' or 'stdevs'"
    ):
        DeviceNormalizer(torch.zeros(3, 256, 256), torch.ones(3), torch.eye(3), pca_lighting="stdev")  # type: ignore[arg-type]


@pytest.mark.parametrize("world", [1, 2, 5])
def test_val_shards_count_every_image_once(layouts: dict[str, Path], world: int) -> None:
    """The validation loader of each of ``world`` ranks, over 12 images (5 ranks: shares of 3 and 2): every image
    once over the ranks, none repeated to even the shares; each rank's loader knows its length."""
    shards = []
    for rank in range(world):
        dm = ImageNetDataModule(root=str(layouts["folders"]), num_classes=4, num_workers=0, batch_size=world)
        dm.trainer = SimpleNamespace(world_size=world, global_rank=rank)  # type: ignore[assignment]
        loader = dm.val_dataloader()
        shards.append(list(loader.sampler))
        assert len(loader) == len(shards[-1])  # batches of one image each
    assert sorted(i for shard in shards for i in shard) == list(range(12))


def test_datamodule_generates_the_sample_says_where_and_batches_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dm = ImageNetDataModule(root=str(tmp_path / "sample"), num_classes=4, batch_size=4, num_workers=0,
                            sample=functools.partial(write_layout, **SMALL), test_crops=10)  # fmt: skip
    with caplog.at_level(logging.INFO, logger="alexnet_lab"):
        dm.prepare_data()
    assert f"writing the generated sample dataset to {tmp_path / 'sample'}" in caplog.messages
    dm.setup("fit")
    assert dm.stats_file.is_file() and dm.class_names[0].startswith("tench")
    train = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert train["image"].shape == (4, 3, CROP, CROP) and train["image"].dtype == torch.float32
    val = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)
    assert val["image"].shape == (4, 10, 3, CROP, CROP)
    with pytest.raises(Exception, match=re.escape(f"data.num_classes=5 but {tmp_path / 'sample'} has 4 classes")):
        ImageNetDataModule(root=str(tmp_path / "sample"), num_classes=5, num_workers=0).setup("fit")


@pytest.mark.parametrize("world", [1, 2, 3])
def test_training_order_shards_the_epoch_and_changes_between_epochs(world: int) -> None:
    samplers = [ResumableSampler(50, world, rank, seed=7) for rank in range(world)]
    epoch0 = [[i for i, _ in s] for s in samplers]
    assert all(len(order) == len(samplers[0]) == 50 // world for order in epoch0)
    flat = [i for order in epoch0 for i in order]
    assert len(set(flat)) == len(flat) == 50 // world * world, "each index at most once per epoch"
    for s in samplers:
        s.set_epoch(1)
    assert [[i for i, _ in s] for s in samplers] != epoch0


@pytest.mark.parametrize("dataset", ["imagenet", "cifar10", "mnist"])
def test_a_sample_whose_writing_is_interrupted_leaves_no_root_and_the_next_run_writes_it_whole(
    tmp_path: Path, dataset: str
) -> None:
    """A run killed while it writes the generated sample (an error, a signal) leaves no data root behind: the next
    run would take a half-written one for the whole sample. That next run writes it, whole."""
    root = tmp_path / "cache" / dataset
    writers = {"imagenet": functools.partial(write_layout, **SMALL),
               "cifar10": functools.partial(small.write_cifar10, train_per_class=2, val_per_class=1),
               "mnist": functools.partial(small.write_mnist, train_per_class=2, val_per_class=1)}  # fmt: skip

    def interrupted(folder: Path) -> None:
        writers[dataset](folder)
        raise KeyboardInterrupt  # after every file is written, before the run is done with it

    def module(sample: Callable[[Path], object]) -> ClassificationData:
        if dataset == "imagenet":
            return ImageNetDataModule(root=str(root), num_classes=4, batch_size=2, num_workers=0, sample=sample)
        return small.SmallImageDataModule(dataset, str(root), batch_size=2, sample=sample)

    with pytest.raises(KeyboardInterrupt):
        module(interrupted).prepare_data()
    assert [p.name for p in root.parent.iterdir()] == [f".{dataset}.lock"]  # no root, no temp folder: its lock
    module(writers[dataset]).prepare_data()
    whole = tmp_path / "whole"
    writers[dataset](whole)
    written = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())


def test_resume_skips_exactly_the_trained_samples_with_the_same_augmentation_seeds() -> None:
    full = ResumableSampler(40, 2, 1, seed=3)
    full.set_epoch(4)
    whole = list(full)
    resumed = ResumableSampler(40, 2, 1, seed=3)
    resumed.set_epoch(4)
    resumed.resume(epoch=4, samples=6)
    assert list(resumed) == whole[6:]
    assert list(resumed) == whole, "the skip applies to the resumed epoch's first pass only"
    other_epoch = ResumableSampler(40, 2, 1, seed=3)
    other_epoch.resume(epoch=4, samples=6)
    assert len(list(other_epoch)) == 20, "a skip for another epoch is ignored"


def test_the_order_and_each_images_augmentation_seed_depend_on_seed_epoch_and_position() -> None:
    def draws(seed: int, epoch: int) -> list[tuple[int, int]]:
        sampler = ResumableSampler(30, 1, 0, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    base = draws(0, 0)
    assert [i for i, _ in draws(1, 0)] != [i for i, _ in base], "another seed, another order"
    augment = [a for _, a in base]
    assert len(set(augment)) == 30, "every position its own augmentation seed"
    for other in (draws(1, 0), draws(0, 1)):  # another seed; another epoch
        assert not set(augment) & {a for _, a in other}, "no augmentation seed repeats across seeds or epochs"


def test_neighbouring_inputs_give_unrelated_seeds() -> None:
    """mix's promise, as an avalanche test: changing the last input by one flips each of the 63 output bits
    half the time. Over 4,000 pairs a bit's flip rate has a std of 0.008: 0.45..0.55 is six of them."""
    rng = random.Random(0)
    flips = np.zeros(63)
    pairs = 4000
    for _ in range(pairs):
        seed, epoch, pos = rng.randrange(2**20), rng.randrange(90), rng.randrange(2**20)
        a, b = mix(seed, epoch, pos), mix(seed, epoch, pos + 1)
        assert 0 <= a < 2**63 and 0 <= b < 2**63
        flips += [(a ^ b) >> bit & 1 for bit in range(63)]
    rates = flips / pairs
    assert rates.min() > 0.45 and rates.max() < 0.55, (rates.min(), rates.max())


def test_the_training_loaders_state_resumes_at_the_next_batch() -> None:
    """What Lightning saves in a checkpoint (epoch, batches done) and loads: the loaded loader yields the
    batches after them, with the same augmentation seeds."""

    def loader(position: tuple[int, int] = (0, 0)) -> ResumableLoader:
        sampler = ResumableSampler(24, 1, 0, seed=5)
        sampler.set_epoch(2)
        return ResumableLoader(_Indexed(), sampler=sampler, batch_size=4, position=lambda: position)

    def batches(loader: ResumableLoader) -> list[list[list[int]]]:  # each batch: its indices, their seeds
        return [[part.tolist() for part in batch] for batch in loader]

    whole = batches(loader())
    saved = loader(position=(2, 3)).state_dict()
    assert saved == {"epoch": 2, "batches": 3}
    resumed = loader()
    resumed.load_state_dict(saved)
    assert batches(resumed) == whole[3:] and len(whole) == 6
    # with another sampler (Lightning's, for overfit_batches) it loads, and cannot resume
    plain = ResumableLoader(_Indexed(), batch_size=4, position=lambda: (0, 0))
    assert len(list(plain)) == len(plain) > 0
    with pytest.raises(AssertionError):
        plain.load_state_dict(saved)


class _Indexed(torch.utils.data.Dataset):
    """Each item is what the sampler handed: (index, augmentation seed)."""

    def __len__(self) -> int:
        return 24

    def __getitem__(self, item: tuple[int, int]) -> tuple[int, int]:
        return item


def test_a_training_crop_depends_on_its_seed_only() -> None:
    image = Image.new("RGB", (300, 260))
    image.putdata([(x % 256, y % 256, (x * y) % 256) for y in range(260) for x in range(300)])
    crops = Crops("train")
    torch.manual_seed(0)
    a = crops(image, seed=12345)
    torch.manual_seed(1)  # the global RNG, which differs between workers, plays no part
    b = crops(image, seed=12345)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["geometry"], b["geometry"])
    geometries = {tuple(crops(image, seed=s)["geometry"].tolist()) for s in range(20)}
    assert len(geometries) > 10, "different seeds give different crops"


def test_step_seeds_fix_the_global_rngs_per_step_and_rank() -> None:
    seed_step(0, step=5, rank=1)
    first = torch.rand(3)
    seed_step(0, step=5, rank=1)
    assert torch.equal(torch.rand(3), first)
    seed_step(0, step=5, rank=0)
    assert not torch.equal(torch.rand(3), first), "another rank, other draws"
    seed_step(0, step=6, rank=1)
    assert not torch.equal(torch.rand(3), first), "another step, other draws"
    assert len({mix(0, step) for step in range(1000)}) == 1000
    # the same draws as torch.manual_seed, python's and numpy's seeding with the step's seed
    seed_step(3, step=7, rank=0)
    ours = (torch.rand(3), torch.randn(2), random.random(), np.random.rand())
    torch.manual_seed(mix(3, 7, 0))
    random.seed(mix(3, 7, 0))
    np.random.seed(mix(3, 7, 0) & 0xFFFFFFFF)
    assert torch.equal(ours[0], torch.rand(3)) and torch.equal(ours[1], torch.randn(2))
    assert ours[2] == random.random() and ours[3] == np.random.rand()


def test_the_channel_mean_subtracts_each_channels_mean_of_the_mean_image(tmp_path: Path) -> None:
    """data.mean=channel: one value per RGB channel, the mean over the training set's mean image (so over all
    training pixels), read here from the statistics file; data.mean=image subtracts the image itself."""
    modules = {}
    for mean in ("image", "channel"):
        dm = ImageNetDataModule(root=str(tmp_path / "sample"), num_classes=4, batch_size=4, num_workers=0,
                                sample=functools.partial(write_layout, **SMALL), mean=mean,
                                lighting_std=0.0)  # fmt: skip
        dm.prepare_data()
        dm.setup("fit")
        modules[mean] = dm
    mean_image = torch.load(modules["image"].stats_file, weights_only=True)["mean_image"]
    images = torch.full((1, 3, CROP, CROP), 100, dtype=torch.uint8)
    geometry = torch.tensor([[3, 5, 0]])
    per_channel = modules["channel"].net_input({"image": images, "geometry": geometry}, training=False)
    expected = 100.0 - mean_image.double().mean(dim=(1, 2))
    assert torch.allclose(per_channel[0].double(), expected[:, None, None].expand(3, CROP, CROP), atol=1e-3)
    whole = modules["image"].net_input({"image": images, "geometry": geometry}, training=False)
    assert torch.allclose(whole[0], 100.0 - mean_image[:, 3 : 3 + CROP, 5 : 5 + CROP], atol=1e-3)


def test_within_a_fit_only_the_training_batches_get_the_pca_lighting(compose_cfg, monkeypatch) -> None:
    """Section 4.1's lighting is a training augmentation: in a fit, the training batches get it, at
    data.lighting_std, and never the validation passes inside the fit (the sanity check's and each epoch's)."""
    from hydra.utils import instantiate

    cfg = compose_cfg("experiment=smoke", "logger=csv", "trainer.max_epochs=1", "data.num_workers=0")
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    datamodule.fit_to(model.net)
    seen: list[tuple[str, bool]] = []
    forward = DeviceNormalizer.forward

    def recorded(self, images, geometry, lighting=False, alpha=None):  # type: ignore[no-untyped-def]
        trainer = datamodule.trainer
        seen.append(("train" if trainer.training else "validation", lighting, self.lighting_std))
        return forward(self, images, geometry, lighting, alpha)

    monkeypatch.setattr(DeviceNormalizer, "forward", recorded)
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    assert datamodule.lighting_std == 0.1 and trainer.num_sanity_val_steps > 0
    assert set(seen) == {("train", True, 0.1), ("validation", False, 0.1)}, "lighting of data.lighting_std, in training"
    assert seen.count(("train", True, 0.1)) == 4, "the 4 training batches of the epoch"


def test_a_batch_whose_every_image_was_skipped_is_empty_but_names_them() -> None:
    assert collate([{"skipped": "a.JPEG"}, {"skipped": "b.JPEG"}]) == {"skipped": ["a.JPEG", "b.JPEG"]}


def fitted_to_a_net_with_its_own_normalisation(root: Path, mean: tuple[float, ...], std: tuple[float, ...]
                                               ) -> ImageNetDataModule:  # fmt: skip
    """A datamodule fitted to a net of 3x224x224 inputs that standardises them by its own mean and std."""
    dm = ImageNetDataModule(root=str(root), num_classes=4, num_workers=0)
    dm.fit_to(SimpleNamespace(in_channels=3, input_size=224, input_normalization=(mean, std)))
    return dm


def test_a_net_with_its_own_normalisation_reads_no_statistics_and_gets_its_images_standardised(
    tmp_path: Path, layouts: dict[str, Path]
) -> None:
    """Validating a net whose weights expect images standardised by their own per-channel mean and std on [0, 1]
    pixels (torchvision's): no training-set statistics are read (there are none), and each pixel becomes
    (p / 255 - mean) / std."""
    root = shutil.copytree(layouts["folders"], tmp_path / "folders")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    dm = fitted_to_a_net_with_its_own_normalisation(root, mean, std)
    images, geometry = (
        torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8),
        torch.tensor([[0, 0, 0], [32, 16, 0]]),
    )
    with pytest.raises(AssertionError, match=r"^setup\(\) first$"):
        dm.net_input({"image": images, "geometry": geometry}, training=False)
    dm.setup("validate")
    assert not dm.stats_file.exists()
    got = dm.net_input({"image": images, "geometry": geometry}, training=False)
    expected = (images.double() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    # images on an accelerator (the meta device stands in for one here): the normalizer follows them there
    on_device = dm.net_input({"image": images.to("meta"), "geometry": geometry.to("meta")}, training=False)
    assert on_device.device.type == dm.normalizer.mean_image.device.type == "meta"


def test_a_net_for_other_images_is_refused_naming_both_shapes_and_the_datasets_to_choose(
    layouts: dict[str, Path],
) -> None:
    dm = ImageNetDataModule(root=str(layouts["folders"]), num_classes=4, num_workers=0)
    with pytest.raises(UserError) as error:
        dm.fit_to(SimpleNamespace(in_channels=1, input_size=32))
    assert str(error.value) == (
        "the net (SimpleNamespace) takes 1x32x32 images and the data give 3x224x224: choose a dataset of its images "
        "(LeNet-5: data=mnist or mnist_sample; Figure 1's net: data=cifar10 or cifar10_sample), or its preset "
        "(experiment=lenet5, experiment=fig1)"
    )


def test_data_of_more_classes_than_the_net_tells_apart_is_refused_and_of_as_many_or_fewer_taken(
    layouts: dict[str, Path],
) -> None:
    """Labels the net has no output for could never be predicted (a checkpoint of 4 classes judged on 10): refused
    in one line that gives the fix. Data of the first classes of a net's (the sample of an ImageNet net) is taken."""
    net = SimpleNamespace(in_channels=3, input_size=224)
    for classes in (4, 5, 1000):
        ImageNetDataModule(root=str(layouts["folders"]), num_classes=4, num_workers=0).fit_to(net, classes)
    dm = ImageNetDataModule(root=str(layouts["folders"]), num_classes=4, num_workers=0)
    with pytest.raises(UserError) as error:
        dm.fit_to(net, 3)
    assert str(error.value) == (
        "data.num_classes=4 but the net tells 3 classes apart: give it data of its classes (data.num_classes=3)"
    )


@pytest.mark.parametrize(("rank", "workers"), [(0, 0), (1, 1)])
def test_each_rank_validates_on_every_other_image_of_the_split_in_batches_of_its_share(
    layouts: dict[str, Path], rank: int, workers: int
) -> None:
    """The validation loader under two processes: rank r of 2 gets images r, r + 2, r + 4, ... (each image once
    over the ranks) in batches of half the global batch, read by data.num_workers workers that persist across
    epochs, into memory pinned only where there is a GPU to copy to."""
    dm = ImageNetDataModule(root=str(layouts["folders"]), num_classes=4, num_workers=workers, batch_size=4)
    dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)  # type: ignore[assignment]
    loader = dm.val_dataloader()
    assert (loader.num_workers, loader.persistent_workers) == (workers, workers > 0)
    assert loader.pin_memory == torch.cuda.is_available()
    batches = list(loader)
    samples = read_split(layouts["folders"], "val").samples  # 4 classes x 3 images
    assert [len(batch["label"]) for batch in batches] == [2, 2, 2]
    assert torch.cat([batch["label"] for batch in batches]).tolist() == [label for _, label in samples[rank::2]]
    assert all(batch["skipped"] == [] for batch in batches), "the datamodule's collate, which counts skipped files"


@pytest.mark.parametrize("overfit", [0, 2])
def test_the_training_loader_cuts_random_patches_in_the_samplers_order_or_overfits_fixed_batches(
    layouts: dict[str, Path], overfit: int
) -> None:
    """The training loader: in the resumable sampler's order, each image section 4.1's random patch and mirror
    fixed by its augmentation seed; with the Trainer's overfit_batches, the same batches every epoch, in one
    shuffled order (data.seed) that draws them across the classes."""
    dm = ImageNetDataModule(root=str(layouts["folders"]), num_classes=4, num_workers=0, batch_size=3, seed=3)
    dm.trainer = SimpleNamespace(world_size=1, global_rank=0, overfit_batches=overfit)  # type: ignore[assignment]
    labels = [label for _, label in read_split(layouts["folders"], "train").samples]  # 4 classes x 5 images
    assert len(dm.train_dataloader()) == 6, "whole batches only: 20 images make 6 of 3"
    batch = next(iter(dm.train_dataloader()))
    if overfit:
        order = torch.randperm(20, generator=torch.Generator().manual_seed(3))[:3].tolist()
        assert batch["label"].tolist() == [labels[i] for i in order]
        assert next(iter(dm.train_dataloader()))["label"].tolist() == batch["label"].tolist()
        return
    drawn = list(ResumableSampler(20, 1, 0, seed=3))[:3]  # (index, augmentation seed) pairs
    assert batch["label"].tolist() == [labels[i] for i, _ in drawn]
    patches = (train_geometry(256, 224, seed) for _, seed in drawn)
    assert batch["geometry"].tolist() == [[top, left, int(flip)] for top, left, flip in patches]
    dm.trainer = None  # a loader made without a Trainer (bench/loader.py) is the training one too
    assert next(iter(dm.train_dataloader()))["label"].tolist() == batch["label"].tolist()


def test_on_the_device_a_batch_names_its_skipped_files_and_one_of_only_skipped_files_is_empty(
    layouts: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """on_after_batch_transfer: each skipped file named in a warning as it comes; a batch whose every image was
    skipped becomes an empty batch (its training step is then skipped); a batch with no skipped key, as the
    prepared copy's, goes on to the net."""
    dm = fitted_to_a_net_with_its_own_normalisation(layouts["folders"], (0.5,) * 3, (0.25,) * 3)
    dm.setup("validate")
    with caplog.at_level(logging.WARNING, logger="alexnet_lab"):
        empty = dm.on_after_batch_transfer({"skipped": ["a.JPEG", "b.JPEG"]}, 0)
    assert caplog.messages == [
        "skipped unreadable image a.JPEG (1 so far)",
        "skipped unreadable image b.JPEG (2 so far)",
    ]
    assert set(empty) == {"image", "label"} and empty["image"].shape == (0, 3, 0, 0)
    assert empty["label"].shape == (0,) and empty["label"].dtype == torch.long
    images = torch.full((2, 3, 224, 224), 96, dtype=torch.uint8)
    batch = dm.on_after_batch_transfer({"image": images, "geometry": torch.zeros(2, 3, dtype=torch.long),
                                        "label": torch.tensor([1, 2])}, 0)  # fmt: skip
    assert torch.allclose(batch["image"], torch.full((2, 3, 224, 224), (96 / 255 - 0.5) / 0.25))
    assert batch["label"].tolist() == [1, 2]
