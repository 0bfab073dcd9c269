"""The check of a user's ImageNet: torchvision's AlexNet with given weights, evaluated by src/eval.py through this
project's loader and metrics, predicts what torchvision's own pipeline predicts on the same images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torchvision.datasets import imagenet as tv_imagenet
from torchvision.models import AlexNet_Weights

from alexnet_lab.data import prepared as prep
from alexnet_lab.data.layouts import ARCHIVES, read_split
from conftest import run_in_process
from sample_layouts import write_layout

CLASSES = 4
# Where torchvision's top-1 beats its runner-up by more than this, the two pipelines must agree. They differ only
# in the resize to 256 (PIL's on the image; torchvision's tensor resize here), which moves a pixel by at most one
# intensity level (1 / (255 * 0.224) in normalised units): on this net, logits by about 1e-6.
MARGIN = 1e-4


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised torchvision AlexNet with its biases zeroed, so that its top-1 class varies between
    images (with torchvision's random biases it is the same class for all)."""
    torch.manual_seed(0)
    net = torchvision.models.alexnet(num_classes=CLASSES)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
                module.bias.zero_()
    path = tmp_path_factory.mktemp("weights") / "alexnet.pt"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("imagenet")
    sizes = {"num_classes": CLASSES, "train_per_class": 2, "val_per_class": 6, "seed": 3}
    roots = {layout: write_layout(base / layout, layout, **sizes) for layout in ("folders", "archives")}
    roots["prepared"] = prep.prepare(roots["folders"], base / "prepared", shard_size=8, workers=1, progress=False)
    return roots


def evaluate(tmp_path: Path, root: Path, weights: str, *extra: str):
    out = tmp_path / "eval"
    tmp_path.mkdir(exist_ok=True)
    result = run_in_process("eval.py", "model=torchvision_alexnet", f"model.weights={weights}", "data=imagenet",
                            f"data.root={root}", f"data.num_classes={CLASSES}", "data.num_workers=0",
                            "data.batch_size=8", *extra, f"hydra.run.dir={out}", cwd=tmp_path)  # fmt: skip
    return result, (json.loads((out / "eval.json").read_text()) if result.returncode == 0 else None)


def torchvisions_pipeline(root: Path, weights: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """AlexNet_Weights.IMAGENET1K_V1.transforms() on each val image, the net's logits batch by batch: (top-1
    classes, the top-1's lead over the runner-up)."""
    net = torchvision.models.alexnet(num_classes=CLASSES)
    net.load_state_dict(torch.load(weights, weights_only=True))
    net.eval()
    transform = AlexNet_Weights.IMAGENET1K_V1.transforms()
    paths = [path for path, _ in read_split(root, "val").samples]
    logits = []
    with torch.no_grad():
        for start in range(0, len(paths), 8):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start : start + 8]])
            logits.append(net(batch))
    top2 = torch.cat(logits).topk(2, dim=1)
    return top2.indices[:, 0], top2.values[:, 0] - top2.values[:, 1]


@pytest.mark.slow(15)
def test_eval_predicts_what_torchvisions_pipeline_predicts(tmp_path: Path, layouts: dict[str, Path],
                                                          weights: Path) -> None:  # fmt: skip
    result, ours = evaluate(tmp_path, layouts["folders"], str(weights))
    assert result.returncode == 0, result.stderr[-3000:]
    theirs, lead = torchvisions_pipeline(layouts["folders"], weights)
    predicted = torch.tensor(ours["1_crop"]["predictions"])
    clear = lead > MARGIN
    assert clear.float().mean() > 0.75 and len(set(theirs.tolist())) > 1, "a test of predictions that differ"
    assert torch.equal(predicted[clear], theirs[clear])
    assert ours["1_crop"]["images"] == len(theirs) == CLASSES * 6
    assert ours["1_crop"]["top1_err"] == pytest.approx((predicted != torch.tensor(
        [label for _, label in read_split(layouts["folders"], "val").samples])).float().mean().item())  # fmt: skip
    assert ours["10_crop"]["crops"] == 10
    # the verdict against torchvision's published errors of IMAGENET1K_V1 (a random net: far off)
    assert ours["reference_check"].startswith("reference check FAILED: top1 error")
    assert "published 43.48%" in ours["reference_check"] and "published 20.93%" in ours["reference_check"]
    assert not (layouts["folders"].parent / "folders-stats.pt").exists(), "no pass over the training set"


@pytest.fixture
def generated_archives_md5(monkeypatch: pytest.MonkeyPatch, layouts: dict[str, Path]) -> None:
    """torchvision checks the archives' md5 against the real ImageNet files: the generated ones' are expected."""
    root = layouts["archives"]
    patched = {split: (name, hashlib.md5((root / name).read_bytes()).hexdigest())
               for split, (name, _) in tv_imagenet.ARCHIVE_META.items()}  # fmt: skip
    monkeypatch.setattr(tv_imagenet, "ARCHIVE_META", patched)
    assert all((root / name).is_file() for name in ARCHIVES)


@pytest.mark.slow(20)
@pytest.mark.usefixtures("generated_archives_md5")
def test_the_check_runs_on_the_archives_and_on_prepared_shards(tmp_path: Path, layouts: dict[str, Path],
                                                               weights: Path) -> None:  # fmt: skip
    found = {}
    for layout in ("folders", "archives", "prepared"):
        result, found[layout] = evaluate(tmp_path / layout, layouts[layout], str(weights), "test_crops=[1]")
        assert result.returncode == 0, (layout, result.stderr[-3000:])
        assert found[layout]["1_crop"]["images"] == CLASSES * 6
    # the archives hold the same files: the same predictions; the shards re-encode them (JPEG quality 90)
    assert found["archives"]["1_crop"]["predictions"] == found["folders"]["1_crop"]["predictions"]


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ("IMAGENET9K", "error: model.weights=IMAGENET9K is not a file, nor a name of weights that TorchvisionAlexNet "
                       "knows: give a name it knows (IMAGENET1K_V1, DEFAULT) or a file of its state dict"),
        ("ten-classes", "error: model.weights={path} does not fit TorchvisionAlexNet: size mismatch for "
                        "classifier.6.weight: copying a param with shape torch.Size([10, 4096])"),
    ],
)  # fmt: skip
def test_weights_that_do_not_fit_are_one_error_line(tmp_path: Path, layouts: dict[str, Path], weights: str,
                                                    expected: str) -> None:  # fmt: skip
    if weights == "ten-classes":
        path = tmp_path / "ten.pt"
        torch.save(torchvision.models.alexnet(num_classes=10).state_dict(), path)
        weights, expected = str(path), expected.format(path=path)
    result, _ = evaluate(tmp_path, layouts["folders"], weights)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(errors) == 1 and errors[0].startswith(expected), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
