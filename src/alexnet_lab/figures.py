"""The paper's Figures 3 and 4, drawn from any run or checkpoint, to PNG and to W&B: what each shows, and what
Figure 4's nearest-neighbour search costs, is in the README ("The paper's figures")."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from annotated_types import Ge
from lightning.pytorch.loggers import WandbLogger
from torch.utils.data import DataLoader, Subset
from torchvision.utils import make_grid

from alexnet_lab.declare import PositiveInt
from alexnet_lab.report import pyplot, save_figure

log = logging.getLogger(__name__)

TILE_SCALE = 4  # each kernel pixel drawn as 4x4 screen pixels
GAP, COLUMN_GAP, TILES_PER_ROW = 2, 8, 16  # pixels between tiles and between the columns' blocks
PREDICTION_IMAGES, QUERY_IMAGES, NEIGHBOURS = 8, 5, 6  # Figure 4's eight, five and six


# -- Figure 3 ----------------------------------------------------------------------------------------------------
def _scaled(kernels: torch.Tensor) -> torch.Tensor:
    """Each kernel (k, c, h, w) min-max scaled to [0, 1] on its own, for display."""
    flat = kernels.flatten(1)
    low, high = flat.min(1).values[:, None], flat.max(1).values[:, None]
    return ((flat - low) / (high - low).clamp_min(1e-12)).view_as(kernels)


def column_saturation(kernels: torch.Tensor, columns: int) -> list[float]:
    """Figure 3's number, for each column's kernels (the first k / columns, ...): the mean over its kernels and
    their pixels of the colour spread max(R, G, B) - min(R, G, B) of each kernel scaled for display (0 for a grey
    kernel, whose channels are equal; up to 1)."""
    scaled = _scaled(kernels.detach().float())
    return [float(s.mean()) for s in (scaled.max(dim=1).values - scaled.min(dim=1).values).chunk(columns)]


def kernel_mosaic(kernels: torch.Tensor, columns: int) -> np.ndarray:
    """The tiles as one uint8 HxWx3 image: each column's kernels in rows of up to 16, the blocks stacked (grey
    kernels, LeNet-5's, fill the three channels alike)."""
    tiles = _scaled(kernels.detach().float().cpu()).repeat_interleave(TILE_SCALE, 2).repeat_interleave(TILE_SCALE, 3)
    grids = [make_grid(block, TILES_PER_ROW, padding=GAP, pad_value=1.0)[:, GAP:-GAP, GAP:-GAP]  # no outer border
             for block in tiles.chunk(columns)]  # fmt: skip
    width = max(grid.shape[2] for grid in grids)
    blocks = [F.pad(grid, (0, width - grid.shape[2]), value=1.0) for grid in grids]
    gap = torch.ones(3, COLUMN_GAP, width)
    mosaic = torch.cat([part for block in blocks for part in (block, gap)][:-1], dim=1)
    return (mosaic.permute(1, 2, 0) * 255).round().byte().numpy()


def first_conv(net: torch.nn.Module) -> torch.nn.Conv2d:
    """The first layer's convolution: the first in the net's modules."""
    return next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def draw_figure3(net: Any, path: Path) -> dict[str, float]:
    """Writes the mosaic to ``path`` (PNG); returns the columns' saturations (RGB kernels only)."""
    from PIL import Image

    kernels = first_conv(net).weight
    columns = int(getattr(net, "columns", 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(kernel_mosaic(kernels, columns)).save(path)
    if kernels.shape[1] != 3:
        return {}
    return {f"fig3/saturation_column{i + 1}": s for i, s in enumerate(column_saturation(kernels, columns))}


# -- a dataset's images, as shown and as the net's input (any alexnet_lab.data.base.ClassificationData) --------
def figure_images(datamodule: Any, split: Literal["train", "val"], indices: list[int]) -> tuple[torch.Tensor, ...]:
    """(uint8 images to show, the net's inputs, labels) of these images of ``split``, as a figure shows them."""
    dataset = datamodule.dataset(split, "figure")
    batch = datamodule.collate([dataset[i] for i in indices])
    return batch["image"], datamodule.net_input(batch, training=False), torch.as_tensor(batch["label"])


def figure_batches(datamodule: Any, split: Literal["train", "val"], count: int, batch_size: int) -> Iterator[Any]:
    """The net's inputs for the first ``count`` images of ``split``, in batches."""
    dataset = datamodule.dataset(split, "figure")
    loader = DataLoader(Subset(dataset, range(min(count, len(dataset)))), batch_size=batch_size,
                        num_workers=datamodule.num_workers, collate_fn=datamodule.collate)  # fmt: skip
    return (datamodule.net_input(batch, training=False) for batch in loader)


# -- Figure 4 ----------------------------------------------------------------------------------------------------
def nearest_neighbours(features: torch.Tensor, queries: torch.Tensor, k: int, chunk: int = 65536) -> torch.Tensor:
    """Indices into ``features`` (N, d) of each query's ``k`` nearest rows in Euclidean distance, nearest
    first; exact: the distances to every row are kept (a few queries' worth), computed ``chunk`` rows at a time."""
    parts = [torch.cdist(queries.double(), features[start : start + chunk].to(queries.device).double())
             for start in range(0, len(features), chunk)]  # fmt: skip
    distances = torch.cat([queries.new_empty((len(queries), 0), dtype=torch.float64), *parts], dim=1)
    return distances.topk(min(k, distances.shape[1]), dim=1, largest=False).indices


def _show(ax: Any, image: torch.Tensor) -> None:
    pixels = image.permute(1, 2, 0).cpu().numpy()
    ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray" if pixels.shape[-1] == 1 else None)
    ax.axis("on")
    ax.set(xticks=[], yticks=[])


def _draw_predictions(figure: Any, shown: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor,
                      names: list[str]) -> int:  # fmt: skip
    """Figure 4's left half: each image with its class, and the net's top 5 classes as bars (the true one red)."""
    figure.suptitle("predictions (top 5)")
    grid = figure.subplots(4, 4, gridspec_kw={"height_ratios": [1.4, 1, 1.4, 1]})
    for n in range(8):
        ax_image, ax_bars = grid[2 * (n // 4), n % 4], grid[2 * (n // 4) + 1, n % 4]
        if n >= len(shown):
            ax_image.axis("off")
            ax_bars.axis("off")
            continue
        label, top = int(labels[n]), probs[n].topk(min(5, len(probs[n])))
        _show(ax_image, shown[n])
        ax_image.set_title(names[label][:24], fontsize=8)
        colours = ["tab:red" if int(i) == label else "tab:blue" for i in top.indices]
        ax_bars.barh(range(len(top.values)), top.values.numpy(), color=colours)
        ax_bars.set_yticks(range(len(top.values)), [names[int(i)][:18] for i in top.indices], fontsize=6)
        ax_bars.invert_yaxis()
        ax_bars.set_xlim(0, 1)
        ax_bars.tick_params(axis="x", labelsize=6)
    return len(shown)


@torch.no_grad()
def draw_figure4(model: Any, datamodule: Any, path: Path, max_train_images: int, batch_size: int = 128) -> int:
    """Writes Figure 4 to ``path``; returns the number of image panels drawn (8 + 5 x 7 when the data allow)."""
    net, device = model.net.eval(), next(model.parameters()).device
    names = datamodule.class_names
    val_count = len(datamodule.dataset("val", "figure"))
    picks = np.linspace(0, val_count - 1, min(PREDICTION_IMAGES, val_count)).round().astype(int).tolist()
    shown, inputs, labels = figure_images(datamodule, "val", picks)
    probs = F.softmax(net(inputs.to(device)).float(), dim=1).cpu()
    # the last hidden layer's features of the first max_train_images training images, centre crops
    batches = figure_batches(datamodule, "train", max_train_images, batch_size)
    features = [net.hidden(batch.to(device)).float().cpu() for batch in batches]
    train_features = torch.cat(features) if features else torch.empty(0)
    queries = picks[:QUERY_IMAGES]
    query_features = net.hidden(inputs[: len(queries)].to(device)).float()
    neighbours = nearest_neighbours(train_features, query_features, min(NEIGHBOURS, len(train_features)))

    fig = pyplot().figure(figsize=(16, 8.5))
    left, right = fig.subfigures(1, 2, width_ratios=[1.1, 1])
    panels = _draw_predictions(left, shown, probs, labels, names)
    right.suptitle("nearest training images by last-hidden-layer features")
    cells = right.subplots(QUERY_IMAGES, 1 + NEIGHBOURS)
    for ax in cells.flat:
        ax.axis("off")  # (a panel with an image turns its axes on)
    for row, found in enumerate(neighbours.tolist()):
        for col, image in enumerate([shown[row], *figure_images(datamodule, "train", found)[0]]):
            _show(cells[row, col], image)
            panels += 1
    save_figure(fig, path, dpi=80)
    return panels


def log_figures(loggers: list[Any], paths: dict[str, Path], metrics: dict[str, float], step: int) -> None:
    """The figures to W&B as images, their numbers to every logger."""
    for logger in loggers:
        if metrics:
            logger.log_metrics(metrics, step=step)
        if isinstance(logger, WandbLogger):
            for key, path in paths.items():
                logger.log_image(key=key, images=[str(path)], step=step)


class DrawFigures(L.Callback):
    """Draws Figure 3 every ``every_n_epochs`` epochs (0: never during training) and Figures 3 and 4 at the end
    of training, into ``dirpath``, and logs them (rank 0 only; nothing once the training loss was not finite).
    ``max_train_images`` bounds Figure 4's nearest-neighbour search (null: the whole training set)."""

    def __init__(
        self,
        dirpath: str,
        every_n_epochs: Annotated[int, Ge(0)] = 0,
        max_train_images: PositiveInt | None = 2000,
        neighbours: bool = True,
    ) -> None:
        self.dirpath, self.every_n_epochs = Path(dirpath), every_n_epochs
        self.max_train_images, self.neighbours = max_train_images, neighbours

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        due = self.every_n_epochs and epoch % self.every_n_epochs == 0
        if due and trainer.is_global_zero and getattr(pl_module, "diverged_at", None) is None:
            path = self.dirpath / f"fig3_epoch{epoch:03d}.png"
            log_figures(trainer.loggers, {"fig3": path}, draw_figure3(pl_module.net, path), trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or getattr(pl_module, "diverged_at", None) is not None:  # nothing to draw
            return
        paths = {"fig3": self.dirpath / "fig3.png"}
        metrics = draw_figure3(pl_module.net, paths["fig3"])
        datamodule = getattr(trainer, "datamodule", None)
        if self.neighbours and datamodule is not None:
            paths["fig4"] = self.dirpath / "fig4.png"
            was_training = pl_module.training
            count = self.max_train_images if self.max_train_images is not None else 10**12
            draw_figure4(pl_module, datamodule, paths["fig4"], count)
            pl_module.train(was_training)
        log_figures(trainer.loggers, paths, metrics, trainer.global_step)
        log.info("figures: %s", ", ".join(str(p) for p in paths.values()))
