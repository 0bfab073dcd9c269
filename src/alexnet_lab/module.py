"""The LightningModule, one for every backbone: the paper's training recipe (section 5), its error rates,
multi-crop testing (section 4.1) and ensembles (section 6)."""

from __future__ import annotations

import time
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Interval
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import OmegaConf
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection, SumMetric

from alexnet_lab import compat
from alexnet_lab.declare import PositiveInt, checked
from alexnet_lab.errors import UserError
from alexnet_lab.models import Backbone
from alexnet_lab.optim import PaperSGD, compile_update, lr_schedule, parameter_groups
from alexnet_lab.resume import WANDB_ID_KEY

Multiplier = Annotated[float, Ge(0)]


class TopKError(Metric):
    """The fraction of images whose label is not among the ``top_k`` highest scores: the paper's top-1 and top-5
    error, over images (micro), summed over ranks. Not torchmetrics' MulticlassAccuracy, whose argument check
    waits for the GPU at every step (docs/benchmarks.md); the data modules check the labels' range once."""

    full_state_update = False
    wrong: torch.Tensor
    total: torch.Tensor

    def __init__(self, top_k: int) -> None:
        super().__init__()
        self.top_k = top_k
        self.add_state("wrong", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        self.wrong += labels.numel() - hits_within(scores, labels, self.top_k)[-1]
        self.total += labels.numel()

    def compute(self) -> torch.Tensor:
        return self.wrong.float() / self.total


def hits_within(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """For j = 1..k, how many images have their label among their j highest scores (one topk: a label occurs at
    most once among an image's k, so the running count along the k is 0 then 1)."""
    return (scores.topk(k, dim=1).indices == labels[:, None]).cumsum(dim=1).sum(dim=0)


def top_ks(num_classes: int) -> tuple[int, int]:
    return 1, min(5, num_classes)


class TrainingTotals:
    """The training loss and top-1/top-5 errors, kept on the device (a value read every step makes the CPU wait
    for the GPU), read on the host once per logging interval and once per epoch. A step writes its loss into a
    buffer and adds its top-k hits, and the buffer is summed and searched for a loss that was not finite when it
    is full or read (docs/benchmarks.md)."""

    def __init__(self, device: torch.device, num_classes: int, first_step: int, buffer: int = 64) -> None:
        self.losses = torch.zeros(buffer, device=device)  # the losses since the last fold, one per step
        self.sums = torch.zeros(2, device=device)  # the loss since the last interval, and over the epoch
        self.hits = torch.zeros(top_ks(num_classes)[1], dtype=torch.long, device=device)  # this epoch's, top 1..k
        self.pending = self.folded = self.interval_steps = self.steps = self.images = 0
        self.started = self.ended = time.perf_counter()
        # the step (counted from first_step) of the first loss that was not finite, or -1: on the device too
        self.first_step, self.nonfinite = first_step, torch.full((), -1, dtype=torch.long, device=device)

    def start_epoch(self) -> None:
        self.fold()
        self.sums[1].zero_()
        self.hits.zero_()
        self.steps = self.images = 0
        self.started = self.ended = time.perf_counter()

    def add(self, loss: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        if self.pending == len(self.losses):
            self.fold()
        self.losses[self.pending] = loss.detach()
        self.hits += hits_within(scores.detach(), labels, len(self.hits))
        self.pending, self.interval_steps, self.steps = self.pending + 1, self.interval_steps + 1, self.steps + 1
        self.images += len(labels)

    def fold(self) -> None:
        """Adds the buffered losses to the sums and notes the first that was not finite, on the device."""
        if not self.pending:
            return
        losses, self.pending = self.losses[: self.pending], 0
        bad = ~torch.isfinite(losses)
        first = self.folded + 1 + bad.int().argmax()  # argmax: the first of the largest
        self.nonfinite = torch.where((self.nonfinite < 0) & bad.any(), first, self.nonfinite)
        self.sums += losses.sum()
        self.folded += len(losses)

    def interval_loss(self) -> torch.Tensor:
        """The mean loss since the last call, on the device."""
        self.fold()
        mean = self.sums[0] / self.interval_steps
        self.sums[0].zero_()
        self.interval_steps = 0
        return mean

    def first_nonfinite(self, reduce_min: Any) -> int | None:
        """The global step of the first loss that was not finite, on any rank (``reduce_min``: the minimum over
        the ranks), or None. Reads the device."""
        self.fold()
        never = torch.iinfo(torch.long).max
        found = int(reduce_min(torch.where(self.nonfinite < 0, never, self.nonfinite)))
        return None if found == never else self.first_step + found

    def epoch(self, reduce: Any) -> dict[str, torch.Tensor]:
        """The epoch's mean loss and errors over every rank (``reduce``: a sum over the ranks), and its training
        images per second over every rank, from the epoch's start to its last step's end (``ended``; its
        validation apart). Lightning's ThroughputMonitor would wait for the GPU at every step to time it. Every rank
        calls it, one whose images were all skipped too; an epoch with no image on any rank gives nothing."""
        self.fold()
        counts = self.sums.new_tensor([self.steps, self.images])
        loss, top1, top5, steps, images = reduce(torch.cat([self.sums[1:], self.hits[[0, -1]].float(), counts]))
        if not images:  # every image of the epoch, on every rank, was skipped: no figures (one read, per epoch)
            return {}
        seconds = (self.ended if self.ended > self.started else time.perf_counter()) - self.started
        return {"train/loss_epoch": loss / steps, "train/top1_err": (images - top1) / images,
                "train/top5_err": (images - top5) / images, "train/images_per_sec": images / seconds}  # fmt: skip


def error_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection(
        {f"top{k}_err": TopKError(top_k=top_k) for k, top_k in zip((1, 5), top_ks(num_classes), strict=True)},
        compute_groups=False,  # the two count different things from the same inputs: never one shared state
    )


class ClassifierModule(L.LightningModule):
    """Trains and evaluates any backbone (:class:`alexnet_lab.models.Backbone`), named with its arguments in
    ``net`` so that a checkpoint alone rebuilds it. The defaults are the paper's recipe (section 5), explained in
    conf/recipe.yaml. A batch is ``{"image": floats, "label": ints}``; images of shape (B, crops, 3, H, W) are
    tested as the paper's multi-crop test, the softmax averaged over the crops (section 4.1)."""

    totals: TrainingTotals  # while it trains (from on_train_start)

    @checked
    def __init__(
        self,
        net: Mapping[str, Any],
        lr: Annotated[float, Gt(0)] = 0.01,
        momentum: Annotated[float, Interval(ge=0, lt=1)] = 0.9,
        weight_decay: Annotated[float, Ge(0)] = 0.0005,
        lr_factor: Annotated[float, Interval(gt=0, le=1)] = 0.1,
        lr_drops: Annotated[int, Ge(0)] = 3,
        schedule: Literal["plateau", "step", "step_iters"] = "plateau",
        plateau_patience: Annotated[int, Ge(0)] = 5,
        step_epochs: PositiveInt = 30,
        step_iters: PositiveInt = 100_000,
        optimizer: Literal["paper", "torch"] = "paper",
        bias_lr_mult: Multiplier = 1.0,
        bias_decay_mult: Multiplier = 1.0,
        channels_last: bool = False,
        compile: bool = False,
        compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "reduce-overhead",
        weights: str | None = None,
    ) -> None:
        super().__init__()
        net = typing.cast(dict, OmegaConf.to_container(net)) if OmegaConf.is_config(net) else dict(net)  # plain
        self.save_hyperparameters(ignore="weights")  # a checkpoint holds the weights it was given
        self.net: Any = build_net(net, weights)
        self.num_classes = num_classes = int(net.get("num_classes", 1000))
        self.diverged_at: int | None = None  # the step of the first training loss that was not finite
        self.val_metrics = error_metrics(num_classes).clone(prefix="val/")
        self.val_loss = MeanMetric(nan_strategy="disable")  # nan stays nan (default: dropped, a device read a step)
        self.val_images = SumMetric(nan_strategy="disable")  # how many images the epoch's error counts, over all ranks
        self.example_input_array = torch.zeros(2, int(self.net.in_channels), *[int(self.net.input_size)] * 2)

    def configure_model(self) -> None:
        hp: Any = self.hparams
        if hp.get("channels_last"):
            self.net.to(memory_format=torch.channels_last)
        if hp.get("compile"):
            self.net.compile(mode=hp.compile_mode)  # in place: parameter names and checkpoints stay the same

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.get("channels_last"):
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if batch["label"].numel() == 0:  # every image of the batch was unreadable and skipped (data.skip_bad_images)
            return None if self.trainer.world_size == 1 else zero_loss(self.net)  # DDP: all ranks reduce gradients
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        self.totals.add(loss, logits, batch["label"])
        return loss

    def on_train_start(self) -> None:
        self.totals = TrainingTotals(self.device, self.num_classes, self.trainer.global_step)

    def finite(self) -> bool:
        """Whether every training loss so far, on every rank, was finite (one read of the device, and a collective
        under DDP: every rank calls it at the same steps). The first time it is not, the run stops after this step,
        validating nothing more: the step is kept in ``diverged_at``, and no checkpoint is written from then on
        (alexnet_lab.resume)."""
        if self.diverged_at is None and "totals" in vars(self):  # (before training: nothing to read)
            self.diverged_at = self.totals.first_nonfinite(lambda t: self.trainer.strategy.reduce(t, reduce_op="min"))
            if self.diverged_at is not None:  # (Lightning validates a run that stops early: not diverged weights)
                self.trainer.should_stop, self.trainer.limit_val_batches = True, 0
        return self.diverged_at is None

    def on_train_epoch_start(self) -> None:
        self.totals.start_epoch()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        trainer, every = self.trainer, self.trainer.log_every_n_steps  # type: ignore[attr-defined]
        if compat.at_last_batch(trainer):  # the epoch's training ends: its time, once the device has done it
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.totals.ended = time.perf_counter()
        due = every and trainer.global_step % every == 0  # a logging step
        # every rank reads the loss once at a logging step and before a validation (none of diverged weights)
        if (due or compat.validates_after_this_step(trainer)) and self.finite() and due and self.totals.interval_steps:
            loss = self.totals.interval_loss()
            self.log("train/loss_step", loss)  # in a training hook: per step, not per epoch
            if trainer.progress_bar_callback is not None:
                compat.show_in_progress_bar(trainer, {"train/loss": loss.item()})

    def predict_probs(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities; for (B, crops, 3, H, W) input the mean softmax over the crops."""
        if images.dim() == 5:
            b, crops = images.shape[:2]
            probs = F.softmax(self(images.flatten(0, 1)), dim=1)
            return probs.view(b, crops, -1).mean(dim=1)
        return F.softmax(self(images), dim=1)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if batch["label"].numel() == 0:
            return
        probs = self.predict_probs(batch["image"])
        loss = F.nll_loss(torch.log(probs.clamp_min(1e-12)), batch["label"], reduction="none")
        # Metric objects, logged per epoch (Lightning's default in validation), sum their states over ranks:
        # each image counts once, as the loader hands it to exactly one rank (ClassificationData.val_dataloader).
        self.val_loss.update(loss)
        self.val_images.update(float(loss.numel()))
        self.val_metrics.update(probs, batch["label"])
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log("val/images", self.val_images)
        self.log_dict(self.val_metrics, prog_bar=True)

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams
        groups = parameter_groups(self.net, hp.lr, hp.weight_decay, hp.bias_lr_mult, hp.bias_decay_mult)
        sgd = PaperSGD if hp.optimizer == "paper" else torch.optim.SGD
        optimizer = sgd(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        if hp.compile:
            compile_update(optimizer)
        schedule = lr_schedule(optimizer, hp.schedule, hp.lr_factor, hp.lr_drops, hp.plateau_patience,
                               hp.step_epochs, hp.step_iters)  # fmt: skip
        return {"optimizer": optimizer, "lr_scheduler": schedule}

    def on_train_epoch_end(self) -> None:
        """Logs the epoch's training figures and steps an epoch schedule after the epoch's validation, not after
        the epoch-end checkpoints as Lightning would: those held the schedule a step behind, and a run resumed
        from one dropped the lr an epoch late (Lightning does not redo the step of an ended epoch)."""
        if not self.finite():
            return
        self.log_dict(self.totals.epoch(lambda sums: self.trainer.strategy.reduce(sums, reduce_op="sum")))  # all ranks
        scheduler = self.lr_schedulers() if compat.at_last_batch(self.trainer) else None  # None: max_steps cut it
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):  # every whole epoch validates
            scheduler.step(float(self.trainer.callback_metrics["val/top1_err"]))  # (settings.check_config)
        elif scheduler is not None and self.hparams.get("schedule") == "step":
            scheduler.step()  # type: ignore[union-attr]

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Epoch schedules step in :meth:`on_train_epoch_end`; ``step_iters`` steps here, after each update."""
        if self.hparams.get("schedule") == "step_iters":
            scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):  # a resumed run continues the same W&B run (src/train.py)
                checkpoint[WANDB_ID_KEY] = logger.version

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_same_net(checkpoint["hyper_parameters"]["net"], self.hparams["net"])  # in every one: CHECKPOINT_KEYS


def zero_loss(net: nn.Module) -> torch.Tensor:
    """0, with a gradient of 0 for every parameter: under DDP, a rank whose batch lost every image still takes part
    in the all-reduce of the gradients (Lightning refuses a step skipped on one rank), adding nothing to them."""
    return torch.stack([p.sum() for p in net.parameters() if p.requires_grad]).sum() * 0.0


def build_net(net: dict[str, Any], weights: str | None) -> Backbone:
    built = instantiate(net)
    if not isinstance(built, Backbone):
        raise UserError(
            f"model.net._target_={net.get('_target_')} is not a backbone: it lacks what "
            "alexnet_lab.models.Backbone asks (in_channels, input_size, columns, hidden)"
        )
    if weights is not None:
        load_weights(built, weights)
    return built


def check_same_net(saved: Mapping[str, Any], current: Mapping[str, Any]) -> None:
    if differs := [f"{k}: checkpoint {saved.get(k)!r} vs this run {current.get(k)!r}"
                   for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]:  # fmt: skip
        raise UserError(
            f"checkpoint was trained with a different architecture ({', '.join(differs)}); "
            "resume with the checkpoint's settings or start a new run"
        )


class Diverged(UserError):
    """The training loss was not finite at ``step``: the run stopped there (ClassifierModule.finite)."""

    def __init__(self, step: int, last_ckpt: str | None) -> None:
        self.step, self.last_ckpt = step, last_ckpt
        fix = (
            f"the last checkpoint before it is {last_ckpt}: resume from it with a lower model.lr, or start again"
            if last_ckpt
            else "no checkpoint was written before it: start again with a lower model.lr"
        )
        super().__init__(f"training diverged: the loss was not finite at step {step}; {fix}")


class Ensemble(L.LightningModule):
    """Section 6: the prediction of several CNNs is the average of their softmax outputs (with each one's
    multi-crop average, as :meth:`ClassifierModule.predict_probs`). Validating it logs the ensemble's error as
    ``val/...`` and each member's as ``val/member{i}/...``, from one pass over the data."""

    def __init__(self, members: list[ClassifierModule]) -> None:
        super().__init__()
        sizes = {int(member.net.input_size) for member in members}
        if len(sizes) != 1:
            raise UserError(f"the checkpoints take different input sizes {sorted(sizes)}: evaluate them apart")
        if len({getattr(member.net, "input_normalization", None) for member in members}) != 1:
            raise UserError("the checkpoints' nets take differently normalised images: evaluate them apart")
        if len(classes := {member.num_classes for member in members}) != 1:
            raise UserError(f"the checkpoints' nets tell {sorted(classes)} classes apart: evaluate them apart")
        self.input_size, self.num_classes = sizes.pop(), classes.pop()
        self.members: list[ClassifierModule] = nn.ModuleList(members)  # type: ignore[assignment]
        self.val_metrics = error_metrics(self.num_classes).clone(prefix="val/")
        self.member_metrics: list[MetricCollection] = nn.ModuleList(  # type: ignore[assignment]
            [error_metrics(self.num_classes).clone(prefix=f"val/member{i}/") for i in range(len(members))]
        )
        self.val_images = SumMetric(nan_strategy="disable")

    def predict_probs(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([member.predict_probs(images) for member in self.members]).mean(dim=0)

    def on_validation_epoch_start(self) -> None:
        self.predictions: list[torch.Tensor] = []  # this rank's top-1 classes, batch by batch

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        if batch["label"].numel() == 0:
            return
        labels = batch["label"]
        probs = [member.predict_probs(batch["image"]) for member in self.members]
        for metrics, member_probs in zip(self.member_metrics, probs, strict=True):
            metrics.update(member_probs, labels)
            self.log_dict(metrics)
        ensemble = torch.stack(probs).mean(dim=0)
        self.predictions.append(ensemble.argmax(dim=1).cpu())
        self.val_metrics.update(ensemble, labels)
        self.val_images.update(float(labels.numel()))
        self.log_dict(self.val_metrics)
        self.log("val/images", self.val_images)
        # the crops each image was judged on, counted from the batch itself: 10 for the paper's test
        self.log("val/crops", float(batch["image"].shape[1] if batch["image"].dim() == 5 else 1))


def load_weights(net: Any, weights: str) -> None:
    """``weights``: a file holding the net's state dict, or a name of the weights the net knows (torchvision's,
    for its net: downloaded on first use)."""
    known = net.named_weights() if hasattr(net, "named_weights") else {}
    if weights in known:
        state = known[weights](progress=False)
    elif Path(weights).is_file():
        state = torch.load(weights, map_location="cpu")  # weights_only, torch's default: tensors, no code
    else:
        names = f"a name it knows ({', '.join(known)}) or " if known else ""
        raise UserError(f"model.weights={weights} is not a file, nor a name of weights that {type(net).__name__} "
                        f"knows: give {names}a file of its state dict")  # fmt: skip
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).split("\n\t")[1]  # load_state_dict lists its errors after "\n\t", first is enough
        raise UserError(f"model.weights={weights} does not fit {type(net).__name__}: {first}") from None


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
