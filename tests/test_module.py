"""The LightningModule against the paper's section 5 recipe, and the error metrics."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from alexnet_lab.data import per_device_batch
from alexnet_lab.errors import UserError
from alexnet_lab.module import AlexNetModule, CheckpointMismatchError, TopKError, error_metrics

TINY_NET = {"num_classes": 6}
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
    assert isinstance(module, AlexNetModule)
    assert module.net.columns == 2 and module.net.norm == "lrn"
    assert tuple(module.example_input_array.shape) == (2, 3, 227, 227)


def test_sgd_settings() -> None:
    module = AlexNetModule(net=TINY_NET, **RECIPE)
    optimizer = module.configure_optimizers()["optimizer"]
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.01, 0.9, 5e-4)


def test_plateau_schedule_divides_by_ten_at_most_three_times() -> None:
    module = AlexNetModule(net=TINY_NET, **RECIPE, plateau_patience=1)
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
    module = AlexNetModule(net=TINY_NET, **RECIPE, schedule="step", step_epochs=2)
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.01] * 2 + [0.001] * 2 + [0.0001] * 2 + [0.00001] * 4)


def test_top_k_error_on_a_hand_made_batch() -> None:
    # 6 classes, 4 images. Worked by hand:
    #   image 0, label 2: class 2 has the top score          -> top-1 right
    #   image 1, label 0: class 0 is third                   -> top-1 wrong, top-5 right
    #   image 2, label 5: class 5 is last of six             -> top-1 wrong, top-5 wrong
    #   image 3, label 1: class 1 has the top score          -> top-1 right
    logits = torch.tensor([
        [0.1, 0.2, 0.9, 0.3, 0.0, -0.1],
        [0.5, 0.1, 0.2, 0.9, 0.7, 0.0],
        [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
        [0.0, 3.0, 1.0, 0.5, 0.2, 0.1],
    ])  # fmt: skip
    labels = torch.tensor([2, 0, 5, 1])
    metrics = error_metrics(6)
    metrics.update(logits, labels)
    result = metrics.compute()
    assert result["top1_err"].item() == pytest.approx(2 / 4)
    assert result["top5_err"].item() == pytest.approx(1 / 4)
    # Micro, not macro: with an image per class except label 0 wrong... the macro mean would differ.
    macro = TopKError.__mro__[1](num_classes=6, top_k=1, average="macro")  # torchmetrics' default
    assert 1 - macro(logits, labels).item() != pytest.approx(2 / 4)


def test_multi_crop_prediction_is_the_mean_softmax() -> None:
    torch.manual_seed(0)
    module = AlexNetModule(net=TINY_NET, **RECIPE).eval()
    crops = torch.randn(2, 10, 3, 227, 227)
    with torch.no_grad():
        got = module.predict_probs(crops)
        by_hand = torch.stack([
            torch.stack([torch.softmax(module(c[None]), dim=1)[0] for c in image]).mean(0) for image in crops
        ])  # fmt: skip
    assert torch.allclose(got, by_hand, atol=1e-6)


def test_a_few_sgd_steps_lower_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    module = AlexNetModule(net={**TINY_NET, "dropout": 0.0, "init": "kaiming"}, **RECIPE)
    optimizer = module.configure_optimizers()["optimizer"]
    images = torch.nn.functional.interpolate(torch.randn(8, 3, 8, 8), size=227, mode="bilinear")
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
    saved = AlexNetModule(net={**TINY_NET, "columns": 1}, **RECIPE)
    checkpoint = {"hyper_parameters": dict(saved.hparams), "state_dict": saved.state_dict()}
    current = AlexNetModule(net={**TINY_NET, "columns": 2}, **RECIPE)
    with pytest.raises(CheckpointMismatchError, match="columns: checkpoint 1 vs this run 2"):
        current.on_load_checkpoint(checkpoint)
