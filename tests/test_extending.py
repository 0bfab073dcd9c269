"""docs/extending.md, followed as written: each recipe's files and changes, in a copy of src/ and conf/, then its
command for one training step, then its checkpoint loaded back."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

DOC = REPO / "docs" / "extending.md"


def recipes() -> dict[str, str]:
    """The doc's sections by their heading (without the count of files)."""
    parts = re.split(r"^## ", DOC.read_text(), flags=re.MULTILINE)[1:]
    return {part.splitlines()[0].split(" (")[0]: part for part in parts}


def follow(recipe: str, root: Path) -> list[str]:
    """Writes the recipe's files and changes into ``root`` (a copy of src/ and conf/); returns its command."""
    blocks = re.findall(r"^(file|change): (\S+)\n```\w*\n(.*?)^```", recipe, flags=re.MULTILINE | re.DOTALL)
    for kind, name, text in blocks:
        path = root / name
        if kind == "file":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            continue
        old, new = text.split("# becomes\n")
        source = path.read_text()
        assert source.count(old) == 1, (
            f"docs/extending.md: the text to change occurs {source.count(old)} times in {name}"
        )
        path.write_text(source.replace(old, new))
    (command,) = re.findall(r"^```bash\n(python src/train.py .*)\n```", recipe, flags=re.MULTILINE)  # as typed
    return command.split()[2:]


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "PYTHONUNBUFFERED": "1"}  # the copy, not the install
    env.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)


CHECKS = {  # what each recipe's trained net must show, read from its checkpoint
    "A backbone": "type(net).__name__ == 'TinyNet' and net.fc.in_features == 8 * 16",
    "An option in an existing ablation group": "any(isinstance(m, torch.nn.GELU) for m in net.modules())",
    "A new ablation group": "net.classifier.drop6.p == 0 and hp['net']['fc_dropout'] == 'none'",
    "A dataset": "hp['net']['num_classes'] == 4",
}


@pytest.mark.slow(25)
@pytest.mark.parametrize("name", list(CHECKS))
def test_each_recipe_trains_and_its_checkpoint_loads_back(tmp_path: Path, name: str) -> None:
    assert set(recipes()) == {*CHECKS, "Where else things go"}, "a recipe without a test, or a test without one"
    root = tmp_path / "repo"
    for folder in ("src", "conf"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    args = follow(recipes()[name], root)
    run_dir = tmp_path / "run"
    result = run(root, "src/train.py", *args, "logger=csv", "trainer.max_epochs=1", "+trainer.limit_train_batches=1",
                 "callbacks.figures.neighbours=false", f"hydra.run.dir={run_dir}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    load = (f"import torch; from alexnet_lab.module import ClassifierModule; "
            f"m = ClassifierModule.load_from_checkpoint({str(run_dir / 'checkpoints' / 'last.ckpt')!r}, "
            f"weights_only=True); net, hp = m.net, m.hparams; assert {CHECKS[name]}, net; print('loaded')")  # fmt: skip
    loaded = run(root, "-c", load)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "loaded", loaded.stderr[-3000:]
