"""The paper's other evidence: Figure 3 (kernels), Figure 4 (predictions and neighbours), Figure 1 (ReLU vs tanh
on CIFAR-10), and LeNet-5 on MNIST, with the small datasets' readers."""

from __future__ import annotations

import csv
import functools
import json
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger
from matplotlib.colors import to_rgb
from PIL import Image

from alexnet_lab import figures
from alexnet_lab.data import small
from alexnet_lab.data.imagenet import ImageNetDataModule
from alexnet_lab.data.layouts import load_rgb
from alexnet_lab.data.transforms import preprocess
from alexnet_lab.errors import UserError
from alexnet_lab.figures import (
    COLUMN_GAP,
    GAP,
    TILE_SCALE,
    DrawFigures,
    _draw_predictions,
    _scaled,
    _show,
    column_saturation,
    draw_figure4,
    figure_batches,
    figure_images,
    first_conv,
    kernel_mosaic,
    nearest_neighbours,
)
from alexnet_lab.models import CifarNet, LeNet5
from alexnet_lab.report import pyplot, write_report
from conftest import run_in_process
from sample_layouts import write_layout
from test_report import make_job, table


def ok(result) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


# -- Figure 3 ----------------------------------------------------------------------------------------------------
def test_kernel_colour_separates_grey_kernels_from_coloured_ones() -> None:
    torch.manual_seed(0)
    grey = torch.randn(48, 1, 11, 11).expand(48, 3, 11, 11)  # R = G = B at every pixel
    coloured = torch.randn(48, 3, 11, 11)
    assert column_saturation(grey, 1) == [pytest.approx(0.0, abs=1e-6)]
    # a column of grey kernels beside a column of coloured ones, in that order
    low, high = column_saturation(torch.cat([grey, coloured]), 2)
    assert low == pytest.approx(0.0, abs=1e-6) and high > 0.2


def test_each_kernel_is_scaled_to_0_1_on_its_own_for_display() -> None:
    """Min-max over all of a kernel's channels and pixels: (x - min) / (max - min); a flat kernel is 0."""
    kernels = torch.stack([
        torch.tensor([[[-2.0, 2.0]], [[0.0, 1.0]], [[1.0, -1.0]]]),  # range 4, channels of their own ranges
        torch.tensor([[[0.1, 0.3]], [[0.2, 0.2]], [[0.5, 0.1]]]),  # range 0.4
        torch.full((3, 1, 2), 7.0),  # flat
    ])  # fmt: skip
    expected = torch.stack([
        torch.tensor([[[0.0, 1.0]], [[0.5, 0.75]], [[0.75, 0.25]]]),
        torch.tensor([[[0.0, 0.5]], [[0.25, 0.25]], [[1.0, 0.0]]]),
        torch.zeros(3, 1, 2),
    ])  # fmt: skip
    assert torch.allclose(_scaled(kernels), expected, atol=1e-6)


def test_a_column_with_fewer_kernels_is_padded_white() -> None:
    """17 kernels in two columns: 9 tiles beside 8; the second block's last tile width is white (255), and so
    are the gaps between tiles and between the blocks."""
    tile = 11 * TILE_SCALE
    mosaic = kernel_mosaic(torch.randn(17, 3, 11, 11), columns=2)
    assert mosaic.shape == (2 * tile + COLUMN_GAP, 9 * (tile + GAP) - GAP, 3)
    assert (mosaic[tile + COLUMN_GAP :, 8 * (tile + GAP) - GAP :] == 255).all()
    assert (mosaic[tile : tile + COLUMN_GAP] == 255).all(), "the gap between the blocks"
    for k in range(1, 9):  # the gap left of each tile but the first, in both blocks
        assert (mosaic[:, k * (tile + GAP) - GAP : k * (tile + GAP)] == 255).all(), k


def test_mosaic_puts_each_column_in_its_own_block_of_rows() -> None:
    # 96 kernels 11x11 in two columns: each block 3 rows of 16 tiles of 44 pixels, 2 pixels apart
    tile = 11 * TILE_SCALE
    kernels = torch.zeros(96, 3, 11, 11)
    kernels[:48, 0] = 1.0  # column 1: red
    kernels[:48, 0, 0, 0] = 0.0  # (one dark pixel, so that min-max scaling keeps the colour)
    kernels[48:] = torch.rand(48, 1, 11, 11)  # column 2: grey
    mosaic = kernel_mosaic(kernels, columns=2)
    block = 3 * (tile + GAP) - GAP
    assert mosaic.shape == (2 * block + COLUMN_GAP, 16 * (tile + GAP) - GAP, 3)
    top, bottom = mosaic[:block], mosaic[block + COLUMN_GAP :]
    assert (top[..., 0].astype(int) - top[..., 1]).max() == 255, "the top block holds column 1's red kernels"
    assert np.array_equal(bottom[..., 0], bottom[..., 1]) and np.array_equal(bottom[..., 1], bottom[..., 2])
    lenet = kernel_mosaic(first_conv(LeNet5()).weight, columns=1)  # 6 grey 5x5 kernels in one row
    assert lenet.shape == (5 * TILE_SCALE, 6 * (5 * TILE_SCALE + GAP) - GAP, 3)


# -- Figure 4 ----------------------------------------------------------------------------------------------------
def test_nearest_neighbours_are_exact_in_chunks_and_find_the_image_itself() -> None:
    torch.manual_seed(0)
    features, queries = torch.randn(1000, 64), torch.randn(5, 64)
    found = nearest_neighbours(features, queries, k=6, chunk=128)
    brute = torch.cdist(queries.double(), features.double()).argsort(dim=1)[:, :6]  # all at once, sorted
    assert torch.equal(found, brute)
    itself = nearest_neighbours(features, features[[0, 17, 523]], k=6, chunk=100)
    assert itself[:, 0].tolist() == [0, 17, 523], "a training image is its own nearest neighbour"


def test_figure4_shows_a_grey_image_in_grey_and_a_colour_image_in_colour() -> None:
    """LeNet-5's digits are one channel: drawn as grey levels, not through a colour map."""
    fig, (grey, colour) = pyplot().subplots(1, 2)
    digit, photo = (
        torch.arange(16, dtype=torch.uint8).view(1, 4, 4),
        torch.randint(0, 256, (3, 4, 4), dtype=torch.uint8),
    )
    _show(grey, digit)
    _show(colour, photo)
    assert np.array_equal(grey.images[0].get_array(), digit[0].numpy()) and grey.images[0].get_cmap().name == "gray"
    assert np.array_equal(colour.images[0].get_array(), photo.permute(1, 2, 0).numpy())
    pyplot().close(fig)


def test_figure4s_predictions_show_each_image_over_its_top5_bars_with_the_true_class_red() -> None:
    """Figure 4's left half, for six images (the last two of eight panels stay empty): each image with its class
    under it, and below it the net's five most probable classes as bars, most probable first, the true one red."""
    rng = np.random.default_rng(0)
    shown = torch.stack([torch.full((3, 8, 8), 10 * n, dtype=torch.uint8) for n in range(6)])  # image n: 10n
    probs = torch.from_numpy(rng.dirichlet(np.ones(7), size=6)).float()
    ranked = [sorted(range(7), key=lambda c: -float(p[c]))[:5] for p in probs]  # top 5, by hand
    labels = torch.tensor([ranked[0][0], ranked[1][2], ranked[2][4], ranked[3][1], ranked[4][3], ranked[5][0]])
    outside = next(c for c in range(7) if c not in ranked[5])
    labels[5] = outside  # the true class outside the top 5: no red bar
    names = [f"class {c} with a long name, cut short" for c in range(7)]
    fig = pyplot().figure()
    assert _draw_predictions(fig, shown, probs, labels, names) == 6
    cell = {(ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start): ax for ax in fig.axes}
    assert sorted(cell) == [(r, c) for r in range(4) for c in range(4)]  # four rows: images, bars, images, bars
    for n in range(8):
        image_ax, bars_ax = cell[2 * (n // 4), n % 4], cell[2 * (n // 4) + 1, n % 4]  # the bars under the image
        if n >= 6:
            assert not image_ax.axison and not bars_ax.axison and not image_ax.images and not bars_ax.patches
            continue
        label = int(labels[n])
        assert np.array_equal(image_ax.images[0].get_array(), np.full((8, 8, 3), 10 * n))
        assert image_ax.get_title() == names[label][:24]
        bars = sorted(bars_ax.patches, key=lambda bar: bar.get_y())  # from the top (the y axis is inverted)
        assert bars_ax.yaxis_inverted() and bars_ax.get_xlim() == (0, 1)
        assert [round(bar.get_width(), 6) for bar in bars] == [round(float(probs[n][c]), 6) for c in ranked[n]]
        assert [t.get_text() for t in bars_ax.get_yticklabels()] == [names[c][:18] for c in ranked[n]]
        red = [c for c, bar in zip(ranked[n], bars, strict=True) if bar.get_facecolor()[:3] == to_rgb("tab:red")]
        assert red == ([label] if label in ranked[n] else [])
    pyplot().close(fig)


class Recorder(WandbLogger):
    """A W&B logger that records what it is given (nothing of W&B's is started)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        self.calls.append(("metrics", dict(metrics), step))

    def log_image(self, key: str, images: list, step: int | None = None, **kwargs) -> None:
        self.calls.append(("image", key, images, step))

    def named(self) -> list[tuple]:
        """The calls, each metrics dict as its sorted names."""
        return [(c[0], sorted(c[1]), *c[2:]) if c[0] == "metrics" else c for c in self.calls]


@pytest.mark.parametrize(("rank", "diverged_at", "drawn"), [(0, None, True), (1, None, False), (0, 5, False)])
def test_figures_at_the_end_of_training_are_drawn_by_rank_0_only_and_not_after_a_divergence(
    tmp_path: Path, rank: int, diverged_at: int | None, drawn: bool
) -> None:
    """Rank 0 of a run that stayed finite draws Figure 3 (here Figure 1's net: one column of RGB kernels) and
    logs it, with its column's saturation, at the last step; the others draw and log nothing."""
    logger = Recorder()
    trainer = SimpleNamespace(is_global_zero=rank == 0, datamodule=None, loggers=[logger], global_step=3)
    module = SimpleNamespace(net=CifarNet(), diverged_at=diverged_at, training=True)
    DrawFigures(str(tmp_path / "figures"), neighbours=False).on_train_end(trainer, module)
    path = tmp_path / "figures" / "fig3.png"
    assert path.is_file() == drawn
    logged = [("metrics", ["fig3/saturation_column1"], 3), ("image", "fig3", [str(path)], 3)]
    assert logger.named() == (logged if drawn else [])


def test_figure3_during_training_every_n_epochs_by_rank_0_until_a_divergence(tmp_path: Path) -> None:
    """Drawn and logged, with its column's saturation, at the step of each Nth epoch's end; not by the other
    ranks, and not from weights that diverged (the module knows it before the epoch-end hooks; a module that
    keeps no ``diverged_at`` is taken as finite)."""
    drawer = DrawFigures(str(tmp_path), every_n_epochs=2, neighbours=False)
    for rank, diverged_at in ((1, None), (0, 0), (0, None)):
        kept = {} if diverged_at is None else {"diverged_at": diverged_at}
        logger, module = Recorder(), SimpleNamespace(net=CifarNet(), **kept)
        for epoch in range(5):  # current_epoch counts from 0: the 2nd and the 4th epochs end at 1 and 3
            trainer = SimpleNamespace(
                is_global_zero=rank == 0, current_epoch=epoch, loggers=[logger], global_step=epoch
            )
            drawer.on_train_epoch_end(trainer, module)
        drawn = [(tmp_path / "fig3_epoch002.png", 1), (tmp_path / "fig3_epoch004.png", 3)]
        drawn = [] if rank or diverged_at is not None else drawn
        assert sorted(tmp_path.iterdir()) == [path for path, _ in drawn]
        assert logger.named() == [call for path, step in drawn for call in (
            ("metrics", ["fig3/saturation_column1"], step), ("image", "fig3", [str(path)], step))]  # fmt: skip


@pytest.mark.parametrize("max_train_images", [7, None])
def test_figure4_searches_max_train_images_training_images_and_null_means_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_train_images: int | None
) -> None:
    searched = []
    monkeypatch.setattr(figures, "draw_figure4", lambda model, dm, path, count: searched.append(count))
    monkeypatch.setattr(figures, "draw_figure3", lambda net, path: {})
    trainer = SimpleNamespace(is_global_zero=True, datamodule=object(), loggers=[], global_step=3)
    module = SimpleNamespace(net=None, diverged_at=None, training=True, train=lambda mode: None)
    DrawFigures(str(tmp_path), max_train_images=max_train_images).on_train_end(trainer, module)
    (count,) = searched
    assert count == 7 if max_train_images == 7 else count >= 1_281_167  # null: every image, ImageNet's included


def test_figure4_from_a_checkpoint_on_the_sample(tmp_path: Path) -> None:
    """The nearest neighbours of training images, by the trained net's own features, include themselves."""
    run = tmp_path / "run"
    ok(run_in_process("train.py", "experiment=lenet5", "data=mnist_sample", "logger=csv", "trainer.max_epochs=2",
                      "callbacks.figures.max_train_images=200", f"hydra.run.dir={run}", cwd=tmp_path))  # fmt: skip
    from alexnet_lab.module import ClassifierModule

    model = ClassifierModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=True).eval()
    datamodule = small.SmallImageDataModule(
        "mnist",
        str(tmp_path / "mnist"),
        sample=functools.partial(small.write_mnist, train_per_class=20, val_per_class=5),
    )
    datamodule.prepare_data()
    datamodule.setup()
    panels = draw_figure4(model, datamodule, tmp_path / "fig4.png", max_train_images=200)
    assert panels == 8 + 5 * (1 + 6)  # eight predictions; five queries with six neighbours each
    assert Image.open(tmp_path / "fig4.png").size == (16 * 80, int(8.5 * 80))  # figsize x dpi
    with torch.no_grad():
        images, inputs, _ = figure_images(datamodule, "train", [3, 150])
        features = torch.cat([model.net.hidden(batch) for batch in figure_batches(datamodule, "train", 200, 64)])
        assert nearest_neighbours(features, model.net.hidden(inputs), k=6)[:, 0].tolist() == [3, 150]
    # training drew both figures at its end (LeNet-5: six 5x5 grey kernels)
    assert Image.open(run / "figures" / "fig3.png").size == (6 * (5 * TILE_SCALE + GAP) - GAP, 5 * TILE_SCALE)
    assert (run / "figures" / "fig4.png").stat().st_size > 10_000
    summary = json.loads((run / "summary.json").read_text())
    assert summary["params"] == 61_706 and summary["crops"] == "whole image"


def test_figure4_takes_each_image_as_validation_does_without_lighting(tmp_path: Path) -> None:
    """Figure 4 shows and embeds the centre crop of each image, less the same pixels of the mean image, and no
    PCA lighting: even from a data module set up to train with the paper's (lighting_std=0.1)."""
    dm = ImageNetDataModule(root=str(tmp_path / "sample"), num_classes=4, batch_size=4, num_workers=0,
                            sample=functools.partial(write_layout, num_classes=4, train_per_class=3, val_per_class=1),
                            lighting_std=0.1)  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    centre = slice(16, 16 + 224)  # (256 - 224) / 2 from the top and the left
    paths = [dm.split("train").samples[i][0] for i in (0, 5, 11)]
    crops = torch.stack([preprocess(load_rgb(path))[:, centre, centre] for path in paths])
    expected = crops.float() - torch.load(dm.stats_file, weights_only=True)["mean_image"][:, centre, centre]
    images, inputs, labels = figure_images(dm, "train", [0, 5, 11])
    assert torch.equal(images, crops) and labels.tolist() == [0, 1, 3]
    assert torch.allclose(inputs, expected, atol=1e-4)
    batches = list(figure_batches(dm, "train", 12, 4))  # every training image, in three batches, in order
    assert [len(batch) for batch in batches] == [4, 4, 4]
    assert torch.allclose(torch.cat(batches)[[0, 5, 11]], expected, atol=1e-4)


def test_figures_script_draws_from_a_checkpoint_to_png_and_wandb(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(run_in_process("train.py", "experiment=smoke", "logger=csv", "trainer.max_epochs=1", f"hydra.run.dir={run}",
                      cwd=tmp_path))  # fmt: skip
    assert (run / "figures" / "fig3.png").is_file() and not (run / "figures" / "fig4.png").exists()  # smoke: fig3
    out = tmp_path / "figs"
    result = run_in_process("figures.py", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "data.num_classes=4",
                            "data.sample.train_per_class=8", "data.sample.val_per_class=4", "data.num_workers=0",
                            f"hydra.run.dir={out}", cwd=tmp_path)  # fmt: skip
    ok(result)
    # the smoke net: 16 conv1 kernels, 8 a column, one row each
    tile = 11 * TILE_SCALE
    assert Image.open(out / "fig3.png").size == (8 * (tile + GAP) - GAP, 2 * tile + COLUMN_GAP)
    assert (out / "fig4.png").stat().st_size > 10_000
    saturations = [line for line in result.stdout.splitlines() if line.startswith("fig3/saturation_column")]
    assert len(saturations) == 2 and all(0 <= float(line.split(": ")[1]) <= 1 for line in saturations)
    media = sorted(p.name for p in (out / "wandb").glob("offline-run-*/files/media/images/*.png"))
    assert [m.split("_")[0] for m in media] == ["fig3", "fig4"], media
    png_only = tmp_path / "png_only"  # ~logger, Hydra's way to leave the group out: the PNGs alone
    ok(run_in_process("figures.py", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "data.num_classes=4",
                      "data.sample.train_per_class=8", "data.sample.val_per_class=4", "data.num_workers=0", "~logger",
                      f"hydra.run.dir={png_only}", cwd=tmp_path))  # fmt: skip
    assert (png_only / "fig4.png").is_file() and not (png_only / "wandb").exists()


# -- the small datasets --------------------------------------------------------------------------------------------
def test_cifar10_batches_of_a_generated_sample_are_read_by_torchvisions_class(tmp_path: Path) -> None:
    root = small.write_cifar10(tmp_path / "c", train_per_class=4, val_per_class=2)
    train, test = small.read_split("cifar10", root, "train"), small.read_split("cifar10", root, "val")
    assert train.images.shape == (40, 3, 32, 32) and test.images.shape == (20, 3, 32, 32)
    assert train.class_names[:3] == ["airplane", "automobile", "bird"]
    assert sorted(train.labels.tolist()) == sorted(list(range(10)) * 4)
    # the format, read here by hand: a Python 2 style pickle, 3072 bytes a row, R, G and B planes
    with open(root / small.CIFAR_DIR / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    assert raw["data"].shape[1] == 3072 and raw["data"].dtype == np.uint8
    first = train.images[0]
    assert torch.equal(first[1].flatten(), torch.from_numpy(raw["data"][0, 1024:2048].copy()))  # the G plane
    with pytest.raises(UserError, match=r"torchvision.datasets.CIFAR10\(.*download=True\) writes into"):
        small.read_split("cifar10", tmp_path, "train")


def test_mnist_idx_files_of_a_generated_sample_are_read_by_torchvisions_class(tmp_path: Path) -> None:
    root = small.write_mnist(tmp_path / "m", train_per_class=3, val_per_class=2)
    train = small.read_split("mnist", root, "train")
    assert train.images.shape == (30, 1, 32, 32), "28x28 digits padded by 2 to LeNet-5's 32x32"
    assert train.images[:, :, :2].max() == 0 and train.images[:, :, :, -2:].max() == 0
    # the files, read here by hand: magic 0x00000803 (unsigned bytes, 3 dims), sizes as 4 big-endian bytes
    raw = (root / "MNIST" / "raw" / "train-images-idx3-ubyte").read_bytes()
    assert raw[:4] == b"\x00\x00\x08\x03" and [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(3)] == [
        30, 28, 28]  # fmt: skip
    assert torch.equal(train.images[0, 0, 2:30, 2:30].flatten(), torch.frombuffer(bytearray(raw[16 : 16 + 784]),
                                                                                    dtype=torch.uint8))  # fmt: skip
    labels = (root / "MNIST" / "raw" / "train-labels-idx1-ubyte").read_bytes()
    assert train.labels.tolist() == list(labels[8:])
    with pytest.raises(UserError, match="MNIST"):
        small.read_split("mnist", tmp_path, "train")


# -- the nets --------------------------------------------------------------------------------------------------------
def test_lenet5_has_the_papers_layers_and_61706_parameters() -> None:
    # C1: 6 maps of 5x5 over 1 input; C3: 16 maps of 5x5 over all 6; C5: 120 of 5x5 over 16; F6: 84; output: 10
    expected = (
        (6 * (5 * 5 * 1 + 1)) + (16 * (5 * 5 * 6 + 1)) + (120 * (5 * 5 * 16 + 1)) + (84 * (120 + 1)) + (10 * (84 + 1))
    )
    assert expected == 61_706
    net = LeNet5()
    assert sum(p.numel() for p in net.parameters()) == expected
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 10) and net.hidden(torch.zeros(1, 1, 32, 32)).shape == (1, 84)
    # the paper's squashing function after C1, C3, C5 and F6 (the subsampling layers' own is left out)
    assert [type(m) for m in net.modules() if isinstance(m, torch.nn.Tanh | torch.nn.ReLU)] == [torch.nn.Tanh] * 4


@pytest.mark.slow(10)
def test_model_lenet5_runs_without_a_preset_on_its_images_and_not_on_others(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ok(
        run_in_process(
            "train.py",
            "~experiment",
            "model=lenet5",
            "data=mnist_sample",
            "logger=csv",
            "trainer.max_epochs=1",
            "callbacks.figures.neighbours=false",
            f"hydra.run.dir={run}",
            cwd=tmp_path,
        )
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["params"] == 61_706 and summary["val/images"] == 10 * 10
    wrong = run_in_process("train.py", "~experiment", "model=lenet5", "data.sample.seed=778",
                           f"hydra.run.dir={tmp_path / 'wrong'}", cwd=tmp_path)  # fmt: skip
    assert wrong.returncode == 2 and wrong.stderr.strip().splitlines()[-1].startswith(
        "error: the net (LeNet5) takes 1x32x32 images and the data give 3x224x224: choose a dataset of its images"
    )


def test_figure1s_cifar_net_is_layers_18pct_without_normalisation() -> None:
    # layers-18pct.cfg: conv 32@5x5 (3 in), conv 32@5x5, conv 64@5x5, fc10 on 64 x 4 x 4 (32 -> 16 -> 8 -> 4)
    expected = 32 * (75 + 1) + 32 * (32 * 25 + 1) + 64 * (32 * 25 + 1) + 10 * (64 * 16 + 1)
    net = CifarNet(activation="tanh")
    assert sum(p.numel() for p in net.parameters()) == expected
    assert net.hidden(torch.zeros(1, 3, 32, 32)).shape == (1, 1024)
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(net(images), net.fc10(net.hidden(images)))  # ten scores from the last hidden layer
    assert net.features.conv1.weight.std().item() == pytest.approx(1e-4, rel=0.1)  # initW=0.0001
    assert sum(isinstance(m, torch.nn.Tanh) for m in net.modules()) == 3 and not any(
        isinstance(m, torch.nn.ReLU) for m in net.modules()
    )


# -- Figure 1 ----------------------------------------------------------------------------------------------------
def test_figure1_report_picks_each_neurons_fastest_rate_and_gives_the_ratio(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    curves = {  # training error per epoch; first below 25% after: relu 2 and 4 epochs, tanh never and 9
        ("relu", "0.01"): [0.6, 0.2, 0.1],
        ("relu", "0.001"): [0.7, 0.5, 0.4, 0.24],
        ("tanh", "0.01"): [0.8, 0.7, 0.6],
        ("tanh", "0.001"): [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.26, 0.2],
    }
    for number, ((neuron, lr), errors) in enumerate(curves.items()):
        make_job(sweep, number, [f"activation={neuron}", f"model.lr={lr}"], [0.5] * len(errors), [0.1] * len(errors))
        path = sweep / str(number) / "csv" / "metrics.csv"
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            if row["train/loss_epoch"]:
                row["train/top1_err"] = errors[int(row["epoch"])]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[*rows[0].keys(), "train/top1_err"])
            writer.writeheader()
            writer.writerows(rows)
    markdown = write_report(sweep)[0].read_text()
    rows = table(markdown, "## Figure 1")
    assert [(r[0], r[2], r[3]) for r in rows] == [("relu", "activation=relu model.lr=0.01", "2"),
                                                  ("tanh", "activation=tanh model.lr=0.001", "9")]  # fmt: skip
    assert "tanh / ReLU: 4.5 (the paper: about 6)" in markdown
    assert (sweep / "fig1.png").stat().st_size > 5000


@pytest.mark.slow(12)
def test_figure1_sweep_on_generated_cifar10(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    ok(run_in_process("train.py", "-m", "experiment=fig1", "activation=relu,tanh", "model.lr=0.003", "logger=csv",
                      "data=cifar10_sample", "trainer.max_epochs=4", f"hydra.sweep.dir={sweep}",
                      cwd=tmp_path))  # fmt: skip
    markdown = (sweep / "report.md").read_text()
    assert "## Figure 1" in markdown and (sweep / "fig1.png").is_file()
    figure1 = {row[0]: row for row in table(markdown, "## Figure 1")}
    for job, neuron in (("0", "relu"), ("1", "tanh")):
        with open(sweep / job / "csv" / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        errors = [float(r["train/top1_err"]) for r in rows if r.get("train/top1_err")]
        assert len(errors) == 4, "the training error of every epoch"
        first = next((str(i + 1) for i, e in enumerate(errors) if e < 0.25), "not in 4")
        assert figure1[neuron][1:4:2] == [job, first], "each neuron's epochs to 25%, from its own curve"
    assert not math.isnan(float(table(markdown)[0][3]))
