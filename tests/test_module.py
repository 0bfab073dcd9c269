"""The LightningModule against the paper's section 5 recipe, and the error metrics."""

from __future__ import annotations

import csv
import math
import time
import traceback
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

from alexnet_lab.data import sampling
from alexnet_lab.data.base import per_device_batch
from alexnet_lab.errors import UserError
from alexnet_lab.models.alexnet import PaperLRN
from alexnet_lab.module import (
    ClassifierModule,
    Ensemble,
    TrainingTotals,
    error_metrics,
    load_weights,
    zero_loss,
)
from alexnet_lab.optim import PaperSGD, compile_update

TINY_NET = {"_target_": "alexnet_lab.models.AlexNet", "num_classes": 6}
LENET = {"_target_": "alexnet_lab.models.LeNet5", "num_classes": 10}
LENET3 = {**LENET, "num_classes": 3}  # a net small enough to fit in process
RECIPE = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "lr_factor": 0.1, "lr_drops": 3}


def test_config_holds_the_papers_recipe(compose_cfg) -> None:
    cfg = compose_cfg()
    # Section 5: "batch size of 128 examples, momentum of 0.9, and weight decay of 0.0005"; "learning rate
    # initialized at 0.01"; "divide the learning rate by 10 ... reduced three times prior to termination".
    assert (cfg.model.momentum, cfg.model.weight_decay, cfg.model.lr) == (0.9, 0.0005, 0.01)
    assert (cfg.model.lr_factor, cfg.model.lr_drops) == (0.1, 3)
    assert compose_cfg("data=imagenet").data.batch_size == 128


def test_instantiated_model_is_the_module_with_net(compose_cfg) -> None:
    module = instantiate(compose_cfg().model)
    assert isinstance(module, ClassifierModule)
    assert module.net.columns == 2 and isinstance(module.net.features.norm1, PaperLRN)
    assert tuple(module.example_input_array.shape) == (2, 3, 224, 224)


def sgd_run(optimizer_class, lrs: list[float], grads: list[torch.Tensor], **kwargs) -> list[torch.Tensor]:
    """The weights after each step of ``optimizer_class`` with these gradients and per-step lrs."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    optimizer = optimizer_class([w], lr=lrs[0], momentum=0.9, weight_decay=5e-4, **kwargs)
    history = [w.detach().clone()]
    for step, (lr, g) in enumerate(zip(lrs, grads, strict=True)):
        if step:  # the first step at the lr the optimizer was made with
            optimizer.param_groups[0]["lr"] = lr
        w.grad = g.clone()
        optimizer.step()
        history.append(w.detach().clone())
    return history


def test_paper_sgd_is_section_5s_rule() -> None:
    # v <- 0.9 v - 0.0005 eps w - eps dL/dw;  w <- w + v, by hand for three steps
    torch.manual_seed(0)
    grads = [torch.randn(3, dtype=torch.float64) for _ in range(3)]
    w, v, eps = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0.01
    by_hand = [w.clone()]
    for g in grads:
        v = 0.9 * v - 0.0005 * eps * w - eps * g
        w = w + v
        by_hand.append(w.clone())
    ours = sgd_run(PaperSGD, [eps] * 3, grads)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-15) for a, b in zip(ours, by_hand, strict=True))


def test_paper_sgd_equals_torch_sgd_at_a_constant_lr_but_not_across_a_drop() -> None:
    torch.manual_seed(0)
    grads = [torch.randn(3, dtype=torch.float64) for _ in range(8)]
    constant = [0.01] * 8
    paper, plain = sgd_run(PaperSGD, constant, grads), sgd_run(torch.optim.SGD, constant, grads)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-15) for a, b in zip(paper, plain, strict=True))
    # the lr is divided by 10 at step 6: the paper's velocity keeps its old size, torch's buffer is rescaled
    dropped = [0.01] * 5 + [0.001] * 3
    paper, plain = sgd_run(PaperSGD, dropped, grads), sgd_run(torch.optim.SGD, dropped, grads)
    assert all(torch.allclose(a, b, rtol=1e-12) for a, b in zip(paper[:6], plain[:6], strict=True))
    # by hand: the paper's step 6 is 0.9 v5 - eps2 (...), torch's 0.9 v5 eps2 / eps1 - eps2 (...), where v5 is the
    # last step taken at eps1 = 0.01, so they differ by 0.9 v5 (1 - eps2 / eps1)
    v5 = paper[5] - paper[4]
    step_paper, step_torch = paper[6] - paper[5], plain[6] - plain[5]
    assert torch.allclose(step_paper - step_torch, 0.9 * v5 * (1 - 0.001 / 0.01), rtol=1e-9)
    assert not torch.allclose(paper[-1], plain[-1], rtol=1e-3)


@pytest.mark.parametrize("choice", ["paper", "torch"])
def test_the_optimizer_choice_steps_by_its_rule_across_an_lr_drop(choice: str) -> None:
    module = ClassifierModule(net=TINY_NET, **RECIPE, optimizer=choice)
    optimizer = module.configure_optimizers()["optimizer"]
    assert len(optimizer.param_groups) == 1, "the paper's silence on biases: one rule for every parameter"
    w = module.net.layers["fc8"].weight
    w0 = w.detach().double().clone()
    g, decay = 1.0, 5e-4
    for lr in (0.01, 0.001):  # the lr divided by 10 after the first step
        for group in optimizer.param_groups:
            group["lr"] = lr
        for p in module.parameters():
            p.grad = torch.full_like(p, g)
        optimizer.step()
    # by hand, from section 5 (v <- 0.9 v - decay eps w - eps g; w <- w + v) and torch's SGD (b <- 0.9 b + g +
    # decay w; w <- w - eps b)
    if choice == "paper":
        v1 = -0.01 * (decay * w0 + g)
        w1 = w0 + v1
        expected = w1 + 0.9 * v1 - 0.001 * (decay * w1 + g)
    else:
        b1 = g + decay * w0
        w1 = w0 - 0.01 * b1
        expected = w1 - 0.001 * (0.9 * b1 + g + decay * w1)
    assert torch.allclose(w.detach().double(), expected, atol=1e-7, rtol=0)


def test_bias_multipliers_give_biases_twice_the_lr_and_no_decay() -> None:
    # the authors' code and Caffe: epsB = 2 epsW (cuda-convnet's layer-params files), lr_mult 2, decay_mult 0
    module = ClassifierModule(net=TINY_NET, **RECIPE, bias_lr_mult=2.0, bias_decay_mult=0.0)
    optimizer = module.configure_optimizers()["optimizer"]
    weight, bias = module.net.layers["fc8"].weight, module.net.layers["fc8"].bias
    w0, b0 = weight.detach().clone(), bias.detach().clone()
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()
    # first step, zero velocity: w - eps (g + 0.0005 w) for weights, b - 2 eps g for biases
    assert torch.allclose(weight.detach(), w0 - 0.01 * (1 + 5e-4 * w0), atol=1e-8)
    assert torch.allclose(bias.detach(), b0 - 2 * 0.01, atol=1e-8)


@pytest.mark.parametrize(("lr_mult", "decay_mult"), [(2.0, 0.0), (1.0, 0.0), (2.0, 1.0), (3.0, 2.0)])
def test_the_decay_and_lr_the_optimizer_applies_to_a_bias(lr_mult: float, decay_mult: float) -> None:
    """With no gradient, one step moves a parameter by its decay only: -eps * decay * w for weights,
    -(lr_mult eps) * (decay_mult decay) * b for biases (biases made non-zero, where the decay shows)."""
    module = ClassifierModule(net=TINY_NET, **RECIPE, bias_lr_mult=lr_mult, bias_decay_mult=decay_mult)
    optimizer = module.configure_optimizers()["optimizer"]
    weight, bias = module.net.layers["fc8"].weight, module.net.layers["fc8"].bias
    with torch.no_grad():
        bias.fill_(3.0)
    w0, b0 = weight.detach().double().clone(), bias.detach().double().clone()
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    eps, decay = 0.01, 5e-4
    assert torch.allclose(weight.detach().double(), w0 - eps * decay * w0, atol=1e-9)
    assert torch.allclose(bias.detach().double(), b0 - lr_mult * eps * decay_mult * decay * b0, atol=1e-9)


@pytest.mark.parametrize("schedule", ["plateau", "step"])
@pytest.mark.parametrize(("lr_mult", "logged"), [(1.0, {"lr": 0.01}), (2.0, {"lr/weights": 0.01, "lr/biases": 0.02})])
def test_the_lr_is_logged_as_lr_or_per_group_with_bias_multipliers(
    tmp_path: Path, lr_mult: float, logged: dict[str, float], schedule: str
) -> None:
    """The names module.py promises for the lr in metrics.csv and W&B (callbacks.lr_monitor), for either schedule."""
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    module = ClassifierModule(net=LENET3, **RECIPE, bias_lr_mult=lr_mult, schedule=schedule)
    batches = DataLoader([{"image": torch.randn(1, 32, 32), "label": label} for label in (0, 2)], batch_size=2)
    trainer = lightning.Trainer(max_steps=1, logger=CSVLogger(tmp_path), callbacks=[LearningRateMonitor()],
                        accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=1)  # fmt: skip
    trainer.fit(module, train_dataloaders=batches, val_dataloaders=batches)
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        row = next(r for r in csv.DictReader(f) if any(r.get(name) for name in logged))
    assert {name: float(row[name]) for name in logged} == pytest.approx(logged)
    assert not {key for key in row if key.startswith("lr")} - set(logged), "no other lr columns"


@pytest.mark.parametrize(("schedule", "rows"), [("step", 2), ("step_iters", 4)])
def test_an_epoch_schedules_lr_is_logged_once_an_epoch_and_an_iteration_schedules_every_step(
    tmp_path: Path, schedule: str, rows: int
) -> None:
    """2 epochs of 2 steps, logging every step: the lr rows in metrics.csv."""
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger

    module = ClassifierModule(net=LENET3, **RECIPE, schedule=schedule)
    batches = DataLoader([{"image": torch.randn(1, 32, 32), "label": i % 3} for i in range(4)], batch_size=2)
    trainer = lightning.Trainer(max_epochs=2, logger=CSVLogger(tmp_path), callbacks=[LearningRateMonitor()],
                                accelerator="cpu", enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, limit_val_batches=0, log_every_n_steps=1)  # fmt: skip
    trainer.fit(module, train_dataloaders=batches)
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        assert sum(1 for r in csv.DictReader(f) if r.get("lr")) == rows


def scheduled_lrs(module: ClassifierModule, steps: int, error: float | None = None) -> list[float]:
    """The lr of each of ``steps`` updates of the module's optimizer, its schedule stepped after each (on a
    validation error that never improves, ``error``, for the plateau)."""
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step() if error is None else scheduler.step(error)
    return lrs


def test_iteration_schedule_divides_the_lr_every_step_iters_steps() -> None:
    # Caffe's lr_policy "step": base_lr * gamma ^ floor(iter / stepsize)
    module = ClassifierModule(net=TINY_NET, **RECIPE, schedule="step_iters", step_iters=3)
    assert module.configure_optimizers()["lr_scheduler"]["interval"] == "step"
    lrs = scheduled_lrs(module, 14)
    assert lrs == pytest.approx([0.01 * 0.1 ** min(i // 3, 3) for i in range(14)])  # lr_drops = 3


def test_plateau_schedule_divides_by_ten_at_most_three_times() -> None:
    module = ClassifierModule(net=TINY_NET, **RECIPE, plateau_patience=1)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["monitor"] == "val/top1_err"
    seen = [optimizer.param_groups[0]["lr"]]
    for _ in range(40):  # the validation error never improves
        scheduler.step(0.5)
        lr = optimizer.param_groups[0]["lr"]
        if lr != seen[-1]:
            seen.append(lr)
    assert seen == pytest.approx([0.01, 0.001, 0.0001, 0.00001])


def test_step_schedule() -> None:
    module = ClassifierModule(net=TINY_NET, **RECIPE, schedule="step", step_epochs=2)
    assert scheduled_lrs(module, 10) == pytest.approx([0.01] * 2 + [0.001] * 2 + [0.0001] * 2 + [0.00001] * 4)


@pytest.mark.parametrize(
    ("schedule", "lrs"),
    [("plateau", [0.01, 0.01, 0.005, 0.0025, 0.0025]), ("step", [0.01, 0.005, 0.0025, 0.0025, 0.0025])],
)
def test_the_schedules_divide_by_lr_factor_lr_drops_times(schedule: str, lrs: list[float]) -> None:
    """model.lr_factor and model.lr_drops other than the paper's 10 and 3: halved twice, then no lower (the
    plateau's first error is the best so far: no drop for it)."""
    module = ClassifierModule(net=TINY_NET, **{**RECIPE, "lr_factor": 0.5, "lr_drops": 2}, schedule=schedule,
                              plateau_patience=0, step_epochs=1)  # fmt: skip
    assert scheduled_lrs(module, 5, error=0.5 if schedule == "plateau" else None) == pytest.approx(lrs)


def test_top_k_error_on_a_hand_made_batch() -> None:
    # 6 classes, 6 images. Worked by hand:
    #   image 0, label 2: class 2 has the top score          -> top-1 right
    #   image 1, label 0: class 0 is third                   -> top-1 wrong, top-5 right
    #   image 2, label 5: class 5 is last of six             -> top-1 wrong, top-5 wrong
    #   image 3, label 1: class 1 has the top score          -> top-1 right
    #   image 4, label 4: class 4 is fifth                   -> top-1 wrong, top-5 right (top-4 would be wrong)
    #   image 5, label 2: class 2 has the top score          -> top-1 right
    # The paper's error is the fraction of images (micro): top-1 3/6, top-5 1/6. A mean over the five classes
    # present (macro) would give top-1 (0 + 1 + 1 + 0 + 1) / 5 = 3/5.
    logits = torch.tensor([
        [0.1, 0.2, 0.9, 0.3, 0.0, -0.1],
        [0.5, 0.1, 0.2, 0.9, 0.7, 0.0],
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
        [0.0, 3.0, 1.0, 0.5, 0.2, 0.1],
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
        [1.0, 0.0, 1.5, 0.0, 0.0, 0.0],
    ])  # fmt: skip
    labels = torch.tensor([2, 0, 5, 1, 4, 2])
    metrics = error_metrics(6)
    # over all images seen: the mean of these two batches' errors would be top-1 (0 + 3/5) / 2, top-5 (0 + 1/5) / 2
    metrics.update(logits[:1], labels[:1])
    metrics.update(logits[1:], labels[1:])
    result = metrics.compute()
    assert result["top1_err"].item() == pytest.approx(3 / 6)
    assert result["top5_err"].item() == pytest.approx(1 / 6)


@pytest.mark.parametrize("num_classes", [3, 1000])
def test_top_k_errors_equal_torchmetrics_micro_accuracy_over_several_batches(num_classes: int) -> None:
    # a second implementation: 1 - torchmetrics' top-k accuracy over images (micro), on batches of 1 to 64
    from torchmetrics.classification import MulticlassAccuracy

    torch.manual_seed(0)
    ours = error_metrics(num_classes)
    theirs = {k: MulticlassAccuracy(num_classes, top_k=min(k, num_classes), average="micro") for k in (1, 5)}
    for size in (1, 17, 64):
        logits, labels = torch.randn(size, num_classes), torch.randint(0, num_classes, (size,))
        logits[torch.arange(size), labels] += 2.5  # right about half the time in the top 5 of 1000
        ours.update(logits, labels)
        for metric in theirs.values():
            metric.update(logits, labels)
    result = ours.compute()
    for k, metric in theirs.items():
        assert result[f"top{k}_err"].item() == pytest.approx(1 - metric.compute().item(), abs=1e-6)
    assert 0 < result["top5_err"] < result["top1_err"] < 1 if num_classes == 1000 else result["top5_err"] == 0
    assert ours["top1_err"].total.item() == 1 + 17 + 64  # every image once


def test_multi_crop_prediction_is_the_mean_softmax() -> None:
    torch.manual_seed(0)
    module = ClassifierModule(net=TINY_NET, **RECIPE).eval()
    crops = torch.randn(2, 10, 3, 224, 224)
    with torch.no_grad():
        got = module.predict_probs(crops)
        by_hand = torch.stack([
            torch.stack([torch.softmax(module(c[None]), dim=1)[0] for c in image]).mean(0) for image in crops
        ])  # fmt: skip
    assert torch.allclose(got, by_hand, atol=1e-6)


def test_a_few_sgd_steps_lower_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    module = ClassifierModule(net={**TINY_NET, "dropout": 0.0, "init": "kaiming"}, **RECIPE)
    optimizer = module.configure_optimizers()["optimizer"]
    images = torch.nn.functional.interpolate(torch.randn(8, 3, 8, 8), size=224, mode="bilinear")
    labels = torch.arange(8) % 6
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(module(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 0.3, losses


def test_global_batch_is_divided_over_processes() -> None:
    assert per_device_batch(128, 1) == 128
    assert per_device_batch(128, 2) == 64
    with pytest.raises(UserError, match="does not divide over 3 processes"):
        per_device_batch(128, 3)


def test_checkpoint_from_another_architecture_is_named() -> None:
    saved = ClassifierModule(net={**TINY_NET, "columns": 1}, **RECIPE)
    checkpoint = {"hyper_parameters": dict(saved.hparams), "state_dict": saved.state_dict()}
    current = ClassifierModule(net={**TINY_NET, "columns": 2, "norm": "bn"}, **RECIPE)  # one more setting too
    with pytest.raises(UserError) as error:
        current.on_load_checkpoint(checkpoint)
    assert str(error.value) == (
        "checkpoint was trained with a different architecture (columns: checkpoint 1 vs this run 2, norm: "
        "checkpoint None vs this run 'bn'); resume with the checkpoint's settings or start a new run"
    )


def test_weights_load_from_a_state_dict_file_and_a_bad_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model.weights: the net's parameters become the file's, also from a file written on a GPU (its tensors
    tagged as CUDA ones here) on a host without one; a path that is not a file, or a state dict of another shape,
    is a one-line UserError naming the value and the net (src/eval.py prints it)."""
    torch.manual_seed(0)
    source = instantiate(LENET)
    with monkeypatch.context() as written_on_a_gpu:
        written_on_a_gpu.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(source.state_dict(), tmp_path / "lenet.pt")
    loaded = ClassifierModule(net=LENET, weights=str(tmp_path / "lenet.pt")).net
    assert all(
        torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), source.state_dict().values(), strict=True)
    )
    with pytest.raises(UserError, match=r"^model.weights=nowhere.pt is not a file, nor a name of weights that LeNet5 "
                                        r"knows: give a file of its state dict$"):  # fmt: skip
        ClassifierModule(net=LENET, weights="nowhere.pt")
    torch.save(instantiate({**LENET, "num_classes": 5}).state_dict(), tmp_path / "five.pt")
    first = (
        "size mismatch for classifier.output.weight: copying a param with shape torch.Size([5, 84]) from "
        "checkpoint, the shape in current model is torch.Size([10, 84])."
    )  # of two, the bias's is left out
    with pytest.raises(UserError) as refused:
        ClassifierModule(net=LENET, weights=str(tmp_path / "five.pt"))
    assert str(refused.value) == f"model.weights={tmp_path / 'five.pt'} does not fit LeNet5: {first}"


def test_weights_by_name_load_without_a_progress_bar_and_a_wrong_name_lists_the_known() -> None:
    """A net that knows names of weights, as torchvision's know IMAGENET1K_V1: here TINY and SMALL."""
    net, source, calls = instantiate(LENET), instantiate(LENET), []

    def load(**kwargs: object) -> dict:
        calls.append(kwargs)
        return source.state_dict()

    net.named_weights = lambda: {"TINY": load, "SMALL": load}
    load_weights(net, "TINY")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), source.state_dict().values(), strict=True))
    assert calls == [{"progress": False}]  # a progress bar would fill a job's log
    known = r"knows: give a name it knows \(TINY, SMALL\) or a file of its state dict$"
    with pytest.raises(
        UserError, match=r"^model.weights=HUGE is not a file, nor a name of weights that LeNet5 " + known
    ):
        load_weights(net, "HUGE")


def test_an_ensemble_takes_its_members_input_and_refuses_mixed_ones() -> None:
    """The input size the crops are cut to (src/eval.py reads it), top-5 for nets of 1,000 classes by default,
    and a one-line error for members that expect differently normalised images or tell apart other classes."""
    torch.manual_seed(0)
    wide = [ClassifierModule(net={"_target_": "alexnet_lab.models.AlexNet", "input_size": 227}) for _ in range(2)]
    ensemble = Ensemble(wide)
    assert ensemble.input_size == 227 and ensemble.val_metrics["top5_err"].top_k == 5
    wide[1].net.input_normalization = "imagenet"
    with pytest.raises(UserError, match="^the checkpoints' nets take differently normalised images: evaluate them "
                                        "apart$"):  # fmt: skip
        Ensemble(wide)
    four = ClassifierModule(net={"_target_": "alexnet_lab.models.AlexNet", "input_size": 227, "num_classes": 4})
    with pytest.raises(UserError, match=r"^the checkpoints' nets tell \[4, 1000\] classes apart: evaluate them apart$"):
        Ensemble([wide[0], four])


def test_an_ensemble_averages_its_members_softmax() -> None:
    # Section 6: "averaging the predictions of five similar CNNs"
    torch.manual_seed(0)
    members = [ClassifierModule(net=TINY_NET, **RECIPE).eval() for _ in range(3)]
    images = torch.randn(4, 10, 3, 224, 224)  # ten crops each
    with torch.no_grad():
        alone = [m.predict_probs(images) for m in members]
        assert torch.equal(Ensemble(members[:1]).predict_probs(images), alone[0])
        assert torch.allclose(Ensemble(members).predict_probs(images), (alone[0] + alone[1] + alone[2]) / 3)
    with pytest.raises(UserError, match="different input sizes"):
        Ensemble([members[0], ClassifierModule(net={**TINY_NET, "input_size": 227}, **RECIPE)])


class Fixed(ClassifierModule):
    """A member whose probabilities are given: row i of ``table`` for an image whose pixels all equal i."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__(net={**TINY_NET, "num_classes": 3, "widths": [8, 8, 8, 8, 8], "fc_width": 8}, **RECIPE)
        self.table = torch.tensor(table)

    def predict_probs(self, images: torch.Tensor) -> torch.Tensor:
        return self.table[images.flatten(1)[:, 0].long()]


A = [[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.1, 0.9, 0.0], [0.0, 0.5, 0.5]]
B = [[0.8, 0.2, 0.0], [0.2, 0.8, 0.0], [0.55, 0.45, 0.0], [0.4, 0.6, 0.0]]


def validate(model: lightning.LightningModule, crops: int) -> dict[str, float]:
    """Lightning's validation of ``model`` on four images of class 0 (pixels all equal to their index, so Fixed
    members look their row up), in a batch of one and one of three, with ``crops`` crops each (1: whole)."""
    images = torch.arange(4, dtype=torch.float32)[:, None, None, None, None].expand(4, crops, 3, 224, 224)
    images = images[:, 0] if crops == 1 else images
    batches = [{"image": images[a:b], "label": torch.zeros(b - a, dtype=torch.long)} for a, b in ((0, 1), (1, 4))]
    trainer = lightning.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    logged = trainer.validate(model, dataloaders=DataLoader(batches, batch_size=None), verbose=False)[0]
    assert set(trainer.progress_bar_metrics) <= set(logged)
    return {key: float(value) for key, value in logged.items()}


@pytest.mark.parametrize("crops", [1, 10])
def test_an_ensembles_validation_error_is_that_of_the_averaged_softmax(crops: int) -> None:
    """Four images of class 0: member a is right on images 0 and 1, b on 0 and 2, their average on image 0 only
    (worked out below): the ensemble's error, 3/4, is neither member's, 2/4. Three classes: top-5 is never
    wrong. What src/eval.py reads: these keys, the image count, the crops and each image's averaged top-1 class."""
    # averaged: [0.85, 0.15, 0], [0.4, 0.6, 0], [0.325, 0.675, 0], [0.2, 0.55, 0.25]: right on image 0 only
    ensemble = Ensemble([Fixed(A), Fixed(B)])
    logged = validate(ensemble, crops)
    assert logged == pytest.approx({
        "val/member0/top1_err": 2 / 4, "val/member0/top5_err": 0.0, "val/member1/top1_err": 2 / 4,
        "val/member1/top5_err": 0.0, "val/top1_err": 3 / 4, "val/top5_err": 0.0, "val/images": 4.0,
        "val/crops": float(crops),
    })  # fmt: skip
    assert torch.cat(ensemble.predictions).tolist() == [0, 1, 1, 1]


def test_validating_one_net_logs_its_loss_error_and_image_count() -> None:
    """Member a alone: right on images 0 and 1; its loss is the mean of -log p(class 0), with p = 0 taken as
    1e-12 rather than giving an infinite loss."""
    net = Fixed(A)
    logged = validate(net, 1)
    loss = -(math.log(0.9) + math.log(0.6) + math.log(0.1) + math.log(1e-12)) / 4
    assert logged == pytest.approx({"val/loss": loss, "val/top1_err": 2 / 4, "val/top5_err": 0.0, "val/images": 4.0})
    assert set(net.trainer.progress_bar_metrics) == {"val/loss", "val/top1_err", "val/top5_err"}  # the bar's


def test_a_validation_loss_that_is_not_finite_is_logged_as_nan_without_a_warning(recwarn) -> None:
    """A net whose weights diverged gives nan scores: its loss is nan, not the mean of its finite images."""
    logged = validate(Fixed([[0.9, 0.1, 0.0], [float("nan")] * 3, [0.1, 0.9, 0.0], [0.0, 0.5, 0.5]]), 1)
    assert math.isnan(logged["val/loss"]) and logged["val/images"] == 4.0
    assert [str(w.message) for w in recwarn if "nan" in str(w.message)] == []


class HostReads(TorchDispatchMode):
    """Counts the reads of a tensor's value on the host while ``counting``: ``.item()``, ``bool()``, ``float()``,
    ``int()`` and indexing with a tensor (one aten op), and ``.tolist()``, ``.numpy()``, ``.cpu()`` (patched here:
    on a CPU tensor they need no op). On a GPU each one makes the CPU wait for the device."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, on_gpu: bool = False) -> None:
        super().__init__()
        self.on_gpu, self._counting, self.reads = on_gpu, False, []
        for name in ("tolist", "numpy", "cpu"):
            monkeypatch.setattr(torch.Tensor, name, self._counted(name, getattr(torch.Tensor, name)))

    @property
    def counting(self) -> bool:
        return self._counting

    @counting.setter
    def counting(self, on: bool) -> None:
        """On a GPU, while counting, a call that waits for the device raises (torch.cuda.set_sync_debug_mode)."""
        self._counting = on
        if self.on_gpu:
            torch.cuda.set_sync_debug_mode("error" if on else "default")

    def _counted(self, name: str, method: Any) -> Any:
        def counted(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self._read(name)
            return method(tensor, *args, **kwargs)

        return counted

    def _read(self, what: str) -> None:
        if self.counting:
            self.reads.append(f"{what} at\n{''.join(traceback.format_stack(limit=12)[:-2])}")

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            self._read("a scalar")
        return func(*args, **(kwargs or {}))


@pytest.mark.slow(25)
@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_twenty_training_steps_read_no_tensor_value_on_the_host(
    compose_cfg, monkeypatch: pytest.MonkeyPatch, accelerator: str
) -> None:
    """The smoke preset's run as src/train.py builds it (its callbacks, the CSV logger, the progress bar, two loader
    workers), steps 2 to 21 of an epoch between two logging intervals: no value is read on the host but by the
    loader, which hands each batch over. On a GPU, also under torch.cuda.set_sync_debug_mode("error"), which
    raises at any call that waits for the device."""
    cfg = compose_cfg("experiment=smoke", "logger=csv", "data.batch_size=1", "data.num_workers=2",
                      "trainer.max_steps=22", "trainer.log_every_n_steps=50", "trainer.enable_progress_bar=true",
                      "model.schedule=step", f"trainer.accelerator={accelerator}")  # fmt: skip
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    datamodule.fit_to(model.net)
    reads = HostReads(monkeypatch, on_gpu=accelerator == "gpu")
    batches = sampling.ResumableLoader.__iter__

    def loader_iter(self: Any) -> Any:  # the loader's own work is not the step's
        loader = batches(self)
        while True:
            counting, reads.counting = reads.counting, False
            try:
                batch = next(loader, None)
            finally:
                reads.counting = counting
            if batch is None:
                return
            yield batch

    monkeypatch.setattr(sampling.ResumableLoader, "__iter__", loader_iter)

    class Window(lightning.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            reads.counting = batch_idx in range(1, 21)  # from step 2 (the first picks its kernels) to step 21

    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None] + [Window()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=[instantiate(cfg.logger.csv)])
    assert trainer.num_training_batches >= 22 or len(datamodule.dataset("train", "train")) >= 22
    with reads:
        trainer.fit(model, datamodule=datamodule)
    assert trainer.global_step == 22 and trainer.progress_bar_callback is not None
    assert reads.reads == [], reads.reads[0]


@pytest.mark.slow(10)
@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=pytest.mark.gpu)])
def test_validation_steps_read_no_tensor_value_on_the_host(
    compose_cfg, monkeypatch: pytest.MonkeyPatch, accelerator: str
) -> None:
    """The smoke preset's validation, with two loader workers, the progress bar and the paper's ten crops, from its
    second batch to its last: its loss, errors and image count are summed on the device, and read once, at the
    epoch's end."""
    cfg = compose_cfg("experiment=smoke", "logger=csv", "data.batch_size=1", "data.test_crops=10", "data.num_workers=2",
                      "trainer.enable_progress_bar=true", f"trainer.accelerator={accelerator}")  # fmt: skip
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    datamodule.fit_to(model.net)
    reads = HostReads(monkeypatch, on_gpu=accelerator == "gpu")

    class Window(lightning.Callback):
        def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int, *_: Any) -> None:
            reads.counting = batch_idx >= 1  # (the first picks its kernels)

        def on_validation_batch_end(self, *args: Any) -> None:
            reads.counting = False

    # under no_grad, not inference_mode: inference_mode hides tensor operations from the counter
    trainer = instantiate(cfg.trainer, callbacks=[Window()], logger=False, inference_mode=False)
    with reads:
        logged = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    assert logged["val/images"] == 16 and reads.reads == [], "\n".join(reads.reads[:3])


def test_the_loss_is_logged_and_shown_per_interval_and_the_errors_per_epoch(tmp_path: Path) -> None:
    """Two epochs of 7 steps, a logging interval of 3: metrics.csv has each interval's mean loss and each epoch's
    mean loss and top-1/top-5 errors, and the progress bar shows the last interval's mean, all as computed here
    from each step's loss and logits."""
    torch.manual_seed(0)
    batches = [{"image": torch.randn(4, 3, 224, 224) * 50, "label": torch.randint(0, 6, (4,))} for _ in range(7)]
    module = ClassifierModule(net={**TINY_NET, "widths": [8, 16, 16, 16, 8], "fc_width": 16}, **RECIPE,
                              schedule="step")  # fmt: skip
    losses, wrong = [], []
    module.net.register_forward_hook(
        lambda net, args, logits: wrong.append([int((logits.topk(k).indices != args[0].label[:, None]).all(1).sum())
                                                for k in (1, 5)]) if net.training else None)  # fmt: skip

    class Steps(lightning.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            losses.append(float(outputs["loss"]))

    class Labelled(torch.Tensor):  # the images, carrying their labels to the forward hook
        label: torch.Tensor

    def with_labels(batch: dict) -> dict:
        image = batch["image"].as_subclass(Labelled)
        image.label = batch["label"]
        return {"image": image, "label": batch["label"]}

    trainer = lightning.Trainer(max_epochs=2, log_every_n_steps=3, logger=CSVLogger(tmp_path, name="", version=""),
                                callbacks=[Steps()], enable_checkpointing=False, enable_model_summary=False,
                                limit_val_batches=0, enable_progress_bar=True)  # fmt: skip
    trainer.fit(module, DataLoader([with_labels(b) for b in batches], batch_size=None))
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    intervals = [losses[0:3], losses[3:6], losses[6:9], losses[9:12]]
    assert [float(r["train/loss_step"]) for r in rows if r["train/loss_step"]] == pytest.approx(
        [sum(i) / len(i) for i in intervals], rel=1e-6)  # fmt: skip
    epochs = [r for r in rows if r["train/loss_epoch"]]
    assert [float(r["train/loss_epoch"]) for r in epochs] == pytest.approx([sum(losses[:7]) / 7, sum(losses[7:]) / 7])
    for epoch, row in enumerate(epochs):
        counts = wrong[7 * epoch : 7 * epoch + 7]
        assert float(row["train/top1_err"]) == pytest.approx(sum(c[0] for c in counts) / 28)
        assert float(row["train/top5_err"]) == pytest.approx(sum(c[1] for c in counts) / 28)
    assert trainer.progress_bar_metrics["train/loss"] == pytest.approx(sum(losses[9:12]) / 3, rel=1e-6)


@pytest.mark.parametrize("buffer", [1, 3, 64])
def test_training_totals_find_the_first_loss_that_is_not_finite_across_folds_and_epochs(buffer: int) -> None:
    """Steps 1-9 over two epochs (4 + 5 steps), step 6 nan, step 8 inf, read every 2 steps and at each epoch's end,
    with a buffer that folds every step, across reads, or never but when read: the intervals' means (nan from step
    6 on), the epochs' losses, the first non-finite step (6, from a first step of 100: 106) once it has happened,
    and errors counted by hand."""
    losses = [2.0, 1.0, 3.0, 0.5, 1.5, math.nan, 2.5, math.inf, 1.0]
    scores = torch.tensor([[0.5, 0.9, 0.4, 0.3, 0.2, 0.1]])  # ranks the classes 1, 0, 2, 3, 4, 5
    labels = [1, 0, 5, 1, 0, 1, 5, 1, 1]  # top-1: right at steps 1, 4, 6, 8, 9; top-5 misses only class 5
    totals = TrainingTotals(torch.device("cpu"), 6, first_step=100, buffer=buffer)
    seen: list[Any] = []
    for step, (loss, label) in enumerate(zip(losses, labels, strict=True), start=1):
        if step == 5:
            seen.append(totals.epoch(lambda t: t))
            totals.start_epoch()
        totals.add(torch.tensor(loss), scores, torch.tensor([label]))
        if step % 2 == 0:
            seen.append((totals.interval_loss().item(), totals.first_nonfinite(lambda t: t)))
    seen.append(totals.epoch(lambda t: t))
    intervals = [s for s in seen if isinstance(s, tuple)]
    assert intervals[:2] == [(1.5, None), (1.75, None)]
    assert math.isnan(intervals[2][0]) and intervals[3][0] == math.inf and [i[1] for i in intervals[2:]] == [106, 106]
    first, second = (s for s in seen if isinstance(s, dict))
    assert first["train/loss_epoch"].item() == pytest.approx(6.5 / 4) and math.isnan(second["train/loss_epoch"])
    errors = [[e[f"train/top{k}_err"].item() for k in (1, 5)] for e in (first, second)]
    assert errors == [pytest.approx([2 / 4, 1 / 4]), pytest.approx([2 / 5, 1 / 5])]


def test_an_epochs_images_per_second_run_from_its_start_to_its_last_steps_end_or_to_the_read_if_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """train/images_per_sec: the images of every rank over the seconds from the epoch's start to its last step's
    end (``ended``, which ClassifierModule sets there: the epoch's validation apart), or to the read for an epoch
    whose last step never came (max_steps cut it). A fake clock; the reduction a stand-in for two like ranks."""
    now = [100.0]
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    totals = TrainingTotals(torch.device("cpu"), 6, first_step=0)
    scores, labels = torch.zeros(4, 6), torch.zeros(4, dtype=torch.long)
    rates = []
    for start, steps, last_step_end in ((100.0, 3, 104.0), (200.0, 2, None)):
        now[0] = start
        totals.start_epoch()
        for _ in range(steps):
            totals.add(torch.tensor(1.0), scores, labels)
        if last_step_end is not None:
            now[0] = totals.ended = last_step_end
        now[0] = start + 10
        epoch = totals.epoch(lambda t: 2 * t)
        assert set(epoch) == {"train/loss_epoch", "train/top1_err", "train/top5_err", "train/images_per_sec"}
        rates.append(epoch["train/images_per_sec"].item())
    assert rates == pytest.approx([2 * 12 / 4, 2 * 8 / 10])


@pytest.mark.parametrize("other_rank_images", [0, 3])
def test_an_epoch_with_no_image_on_this_rank_sums_the_others_and_one_with_none_anywhere_gives_no_figures(
    other_rank_images: int,
) -> None:
    """A rank whose every batch of the epoch lost its images still sums with the others (here a stand-in adds
    another rank's three images, all wrong at top-1, with a loss of 6 over its 2 steps); an epoch without an image
    on any rank gives no figures, not 0 / 0."""
    totals = TrainingTotals(torch.device("cpu"), 6, first_step=0)
    totals.start_epoch()
    other = torch.tensor([6.0, 0.0, 0.0, 2.0, other_rank_images])  # loss, top-1 and top-5 hits, steps, images
    epoch = totals.epoch(lambda t: t + (other if other_rank_images else 0))
    if other_rank_images:
        assert (float(epoch["train/loss_epoch"]), float(epoch["train/top1_err"])) == (3.0, 1.0)
    else:
        assert epoch == {}


def fit_steps(module: ClassifierModule, batches: list[dict], steps: int, ckpt_path: Path | None = None) -> list[float]:
    """Trains ``module`` to step ``steps`` on ``batches`` (resuming from ``ckpt_path``); the losses of its steps."""
    losses: list[float] = []

    class Steps(lightning.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            losses.append(float(outputs["loss"]))

    trainer = lightning.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, callbacks=[Steps()],
                                enable_model_summary=False, enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, DataLoader(batches, batch_size=None), ckpt_path=ckpt_path, weights_only=True)
    module.trainer_ = trainer
    return losses


@pytest.mark.slow(60)
@pytest.mark.parametrize("optimizer", ["paper", "torch"])
def test_ten_compiled_steps_equal_eager_ones_across_an_lr_drop_and_a_resume(tmp_path: Path, optimizer: str) -> None:
    """model.compile=true: the forward, backward and update compiled; the lr divided by 10 after steps 3 and 6
    (held in a tensor, so the drop compiles nothing again), and the run saved after its first epoch of 5 steps and
    resumed. Losses within
    1e-5 relative, weights within 1e-6 and the momentum buffers within 1e-5 relative of the eager run's (fp32, the
    same arithmetic in another order)."""
    torch.manual_seed(0)
    batches = [{"image": torch.randn(4, 3, 224, 224) * 50, "label": torch.randint(0, 6, (4,))} for _ in range(5)]
    options = {"net": {**TINY_NET, "widths": [8, 16, 16, 16, 8], "fc_width": 16, "dropout": 0.0}, **RECIPE,
               "optimizer": optimizer, "schedule": "step_iters", "step_iters": 3, "lr_drops": 2}  # fmt: skip
    runs = {}
    for compile in (False, True):
        torch._dynamo.reset()
        torch.manual_seed(1)
        first = ClassifierModule(**options, compile=compile)
        with torch._dynamo.config.patch(error_on_recompile=True):  # the lr drop after step 3 recompiles nothing
            losses = fit_steps(first, batches, 5)
        first.trainer_.save_checkpoint(tmp_path / f"{compile}.ckpt")
        resumed = ClassifierModule(**options, compile=compile)
        losses += fit_steps(resumed, batches, 10, ckpt_path=tmp_path / f"{compile}.ckpt")
        runs[compile] = losses, resumed
    (eager_losses, eager), (losses, resumed) = runs[False], runs[True]
    assert losses == pytest.approx(eager_losses, rel=1e-5) and len(losses) == 10
    for name, p in eager.named_parameters():
        torch.testing.assert_close(dict(resumed.named_parameters())[name], p, atol=1e-6, rtol=0)
    for group_e, group_r in zip(eager.trainer_.optimizers[0].param_groups, resumed.trainer_.optimizers[0].param_groups,
                                strict=True):  # fmt: skip
        assert float(group_r["lr"]) == pytest.approx(0.01 * 0.1**2) and float(group_e["lr"]) == pytest.approx(1e-4)
        for p_e, p_r in zip(group_e["params"], group_r["params"], strict=True):
            state_e, state_r = (trainer.optimizers[0].state[p] for trainer, p in
                                ((eager.trainer_, p_e), (resumed.trainer_, p_r)))  # fmt: skip
            for key in state_e:
                if isinstance(state_e[key], torch.Tensor) and state_e[key].numel() > 1:
                    torch.testing.assert_close(state_r[key], state_e[key], atol=1e-6, rtol=1e-5)


def test_the_plateau_schedule_stops_each_groups_lr_at_its_own_floor() -> None:
    """lr_drops divisions of each group's own lr: with biases at twice the lr (cuda-convnet's epsB = 2 epsW), the
    biases' lr stops at twice the weights' floor, 2 x 0.01 x 0.1^3, not at the weights' 0.01 x 0.1^3."""
    module = ClassifierModule(net=TINY_NET, **RECIPE, plateau_patience=0, bias_lr_mult=2.0, bias_decay_mult=0.0)
    scheduler = module.configure_optimizers()["lr_scheduler"]["scheduler"]
    for _ in range(10):  # the first epoch sets the best error; none improves on it
        scheduler.step(0.9)
    lrs = {group["name"]: group["lr"] for group in scheduler.optimizer.param_groups}
    assert lrs == pytest.approx({"weights": 0.01 * 0.1**3, "biases": 2 * 0.01 * 0.1**3})


@pytest.mark.parametrize(
    ("max_steps", "plateau_steps"), [(2, 0), (4, 1), (6, 2)], ids=["in-epoch-0", "in-epoch-1", "at-an-end"]
)
def test_max_steps_inside_an_epoch_ends_the_run_without_stepping_the_plateau_on_a_stale_error(
    max_steps: int, plateau_steps: int
) -> None:
    """Epochs of 3 steps: a run that max_steps ends inside an epoch did not validate that epoch, so the plateau
    schedule has no new val/top1_err to step on (in epoch 0, none at all); it steps once per validated epoch."""
    module = ClassifierModule(net=LENET3, **RECIPE)
    batches = DataLoader([{"image": torch.randn(1, 32, 32), "label": i % 3} for i in range(6)], batch_size=2)
    trainer = lightning.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, train_dataloaders=batches, val_dataloaders=batches)
    assert trainer.global_step == max_steps
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == plateau_steps


def test_a_checkpoint_keeps_the_wandb_run_id_so_a_resumed_run_continues_that_run(tmp_path: Path) -> None:
    module = ClassifierModule(net=LENET3, **RECIPE)
    module.trainer = lightning.Trainer(
        logger=[CSVLogger(tmp_path), WandbLogger(id="r2d2", offline=True, save_dir=tmp_path)]
    )
    checkpoint: dict[str, Any] = {}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint == {"wandb_run_id": "r2d2"}


@pytest.mark.parametrize("mode", ["default", "max-autotune"])
def test_the_net_is_made_channels_last_and_compiled_in_place_when_asked(
    monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """model.channels_last: the net's weights, and each batch it is given, in channels-last memory format;
    model.compile: the net compiled in place with model.compile_mode (torch.compile is recorded here, not run),
    so that its parameter names, and so checkpoints, stay those of the plain net. Neither by default."""
    compiled: list[dict[str, Any]] = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: compiled.append(kwargs) or fn)
    net = {**TINY_NET, "widths": [8, 16, 16, 16, 8], "fc_width": 16}
    plain, module = (ClassifierModule(net=net, **RECIPE, **options)
                     for options in ({}, {"channels_last": True, "compile": True, "compile_mode": mode}))  # fmt: skip
    inputs: list[torch.Tensor] = []
    for each in (plain, module):
        each.configure_model()
        each.net.register_forward_pre_hook(lambda net, args: inputs.append(args[0]))
        each(torch.randn(2, 3, 224, 224))
    assert compiled == [{"mode": mode}]
    assert list(module.state_dict()) == list(plain.state_dict())
    plain_conv1, conv1 = (next(p for p in each.net.parameters() if p.dim() == 4) for each in (plain, module))
    assert conv1.is_contiguous(memory_format=torch.channels_last) and not conv1.is_contiguous()
    assert plain_conv1.is_contiguous()
    assert inputs[0].is_contiguous() and not inputs[1].is_contiguous()
    assert inputs[1].is_contiguous(memory_format=torch.channels_last)


def test_the_iteration_schedule_steps_after_every_update_in_a_fit() -> None:
    """schedule=step_iters, through Lightning's lr_scheduler_step hook: the lr of each of five steps, divided by
    10 every 2 updates (Caffe's lr_policy "step"; the schedule itself is checked on its own above)."""
    module = ClassifierModule(net=LENET3, **RECIPE,
                              schedule="step_iters", step_iters=2)  # fmt: skip
    lrs: list[float] = []

    class Lrs(lightning.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    batches = DataLoader([{"image": torch.randn(1, 32, 32), "label": i % 3} for i in range(6)], batch_size=2)
    trainer = lightning.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False, callbacks=[Lrs()],
                                limit_val_batches=0)  # fmt: skip
    trainer.fit(module, train_dataloaders=batches)
    assert lrs == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.0001])


@pytest.mark.parametrize(
    ("max_steps", "lrs"),
    [(-1, [0.01] * 3 + [0.001] * 3 + [0.0001] * 3), (5, [0.01] * 3 + [0.001] * 2)],
    ids=["three-epochs", "cut-in-epoch-1"],
)
def test_the_epoch_schedule_steps_after_each_whole_epoch_in_a_fit(max_steps: int, lrs: list[float]) -> None:
    """schedule=step with step_epochs=1, epochs of 3 steps: the lr of each step, divided by 10 after each whole
    epoch; a run that max_steps cuts inside an epoch ends there without a step for the cut epoch."""
    module = ClassifierModule(net=LENET3, **RECIPE, schedule="step", step_epochs=1)
    seen: list[float] = []

    class Lrs(lightning.Callback):
        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    batches = DataLoader([{"image": torch.randn(1, 32, 32), "label": i % 3} for i in range(6)], batch_size=2)
    trainer = lightning.Trainer(max_epochs=3, max_steps=max_steps, accelerator="cpu", logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                callbacks=[Lrs()], limit_val_batches=0)  # fmt: skip
    trainer.fit(module, train_dataloaders=batches)
    assert seen == pytest.approx(lrs)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(lrs[-1] / 10 if max_steps < 0 else lrs[-1])


@pytest.mark.parametrize(
    ("nan_image", "log_every", "val_every", "stop_step", "validations"),
    [(2, 2, 1.0, 4, []), (7, 50, 1.0, 8, []), (None, 2, 1.0, 16, [8, 16]),
     (2, 50, 0.5, 4, []), (None, 50, 0.5, 16, [4, 8, 12, 16])],
    ids=["at-a-logging-step", "at-the-epochs-end", "finite", "before-a-mid-epoch-validation", "finite-mid-epoch"],
)  # fmt: skip
def test_a_loss_that_is_not_finite_stops_the_fit_naming_its_step_and_validates_nothing_after_it(
    nan_image: int | None, log_every: int, val_every: float, stop_step: int, validations: list[int]
) -> None:
    """ClassifierModule.finite in a fit, in process: eight one-image batches, two epochs, the loss read every
    ``log_every`` steps and before each validation (each epoch's end, and its middle with ``val_every`` 0.5). With
    image ``nan_image`` all nan, that step's loss is not: the fit stops at the first read after it, with
    diverged_at = nan_image + 1, and nothing is logged or validated from then on (Lightning would validate a fit
    that stops early). A finite run validates at each ``val_every`` of an epoch."""
    module = ClassifierModule(net=LENET3, **RECIPE, schedule="step")
    images = [torch.full((1, 32, 32), math.nan) if i == nan_image else torch.randn(1, 32, 32) for i in range(8)]
    batches = DataLoader([{"image": image, "label": i % 3} for i, image in enumerate(images)], batch_size=1)
    val = DataLoader([{"image": torch.randn(1, 32, 32), "label": i % 3} for i in range(3)], batch_size=1)
    validated: list[int] = []

    class Validations(lightning.Callback):
        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            validated.append(trainer.global_step)

    trainer = lightning.Trainer(max_epochs=2, log_every_n_steps=log_every, accelerator="cpu", logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                num_sanity_val_steps=0, val_check_interval=val_every,
                                callbacks=[Validations()])  # fmt: skip
    trainer.fit(module, train_dataloaders=batches, val_dataloaders=val)
    diverged = None if nan_image is None else nan_image + 1
    assert (trainer.global_step, module.diverged_at, trainer.should_stop) == (stop_step, diverged, diverged is not None)
    assert validated == validations
    if diverged and log_every < diverged:
        assert math.isfinite(trainer.callback_metrics["train/loss_step"]), "the interval before it was logged"
    assert ("train/loss_epoch" in trainer.callback_metrics) == (diverged is None), "no figures of a diverged epoch"


@pytest.mark.parametrize("compile", [False, True])
def test_model_compile_holds_each_groups_lr_in_a_tensor_for_the_compiled_update(compile: bool) -> None:
    """With model.compile the update is compiled, and the lr it reads is a tensor (a schedule's drop changes it in
    place, no recompilation); without, the lr is the float the paper's recipe gives."""
    optimizer = ClassifierModule(net=LENET3, **RECIPE, compile=compile).configure_optimizers()["optimizer"]
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert all(isinstance(lr, torch.Tensor) == compile and float(lr) == RECIPE["lr"] for lr in lrs)


def test_the_compiled_update_runs_the_closure_once_then_the_update_eager_first_and_compiled_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """compile_update: ``step(closure)`` runs Lightning's closure (forward and backward) once, as it is, and returns
    its loss; the update is the optimizer's own, eager at a first step (which makes the velocities) and compiled
    from then on (torch.compile recorded here, not run); each group's lr, and an optimizer's that has stepped
    its velocity lr, become float64 tensors of their values. The weights follow the plain optimizer's."""
    compiled: list[int] = []

    def recorded(fn: Any, **kwargs: Any) -> Any:
        return lambda *args: compiled.append(1) or fn(*args)

    monkeypatch.setattr(torch, "compile", recorded)
    for stepped_before in (False, True):
        weights = [torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0])) for _ in range(2)]
        ours, plain = (PaperSGD([w], lr=0.1, momentum=0.9, weight_decay=0.0005) for w in weights)
        losses: list[list[float]] = [[], []]
        for optimizer, w, seen in ((ours, weights[0], losses[0]), (plain, weights[1], losses[1])):
            closures = 0

            def closure(w: torch.Tensor = w) -> torch.Tensor:
                nonlocal closures
                closures += 1
                w.grad = None
                loss = (w**2).sum()
                loss.backward()
                return loss

            if stepped_before:
                optimizer.step(closure)
            if optimizer is ours:
                compiled.clear()
                compile_update(ours)
                held = ["lr", "velocity_lr"] if stepped_before else ["lr"]
                assert [(type(g[k]), g[k].dtype, float(g[k])) for g in ours.param_groups for k in held] == [
                    (torch.Tensor, torch.float64, 0.1)] * len(held)  # fmt: skip
            seen += [float(optimizer.step(closure)) for _ in range(3)]
            assert closures == 3 + stepped_before and optimizer.step() is None  # no closure: no loss
        assert len(compiled) == (4 if stepped_before else 3)  # the steps after the first, closure or not
        assert losses[0] == pytest.approx(losses[1]) and torch.allclose(weights[0], weights[1])


def test_a_net_that_is_not_a_backbone_is_refused_naming_what_it_lacks() -> None:
    with pytest.raises(UserError) as error:
        ClassifierModule(net={"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 3}, **RECIPE)
    assert str(error.value) == (
        "model.net._target_=torch.nn.Linear is not a backbone: it lacks what alexnet_lab.models.Backbone asks "
        "(in_channels, input_size, columns, hidden)"
    )


def test_the_loss_of_a_rank_with_nothing_to_learn_is_zero_with_a_zero_gradient_for_every_parameter() -> None:
    """What a rank adds to DDP's all-reduce for a batch that lost every image: 0, and zeros for every parameter
    (a gradient left out would leave that rank out of its bucket's all-reduce)."""
    net = instantiate(LENET3)
    for p in net.parameters():
        p.data.normal_()  # not zero: a gradient of 0 must come from the loss, not the weights
    loss = zero_loss(net)
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert float(loss) == 0 and len(grads) == 10 and all(g is not None and not g.any() for g in grads)


def test_a_batch_that_lost_every_image_updates_no_weight_in_one_process() -> None:
    """One process: the step of an empty batch (every image skipped) is passed over, no update at all (a zero loss
    there would still move the weights by the momentum and the weight decay); the steps around it train."""
    torch.manual_seed(0)
    module = ClassifierModule(net=LENET3, **RECIPE, schedule="step")
    full = {"image": torch.randn(2, 1, 32, 32), "label": torch.tensor([0, 1])}
    empty = {"image": torch.empty(0, 1, 32, 32), "label": torch.empty(0, dtype=torch.long)}
    weights: list[torch.Tensor] = []

    class Weights(lightning.Callback):
        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            weights.append(torch.cat([p.detach().flatten() for p in pl_module.parameters()]).clone())

    trainer = lightning.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, callbacks=[Weights()],
                                enable_model_summary=False, enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, DataLoader([full, full, empty, full], batch_size=None))
    assert len(weights) == 4 and torch.equal(weights[1], weights[2]), "the empty batch's step updated the weights"
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[2], weights[3]), "the others train"
