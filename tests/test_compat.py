"""Each private name of Lightning, Hydra and torch that alexnet_lab/compat.py uses, one test each: an upgrade that
removes or changes one fails here, naming it, before anything else breaks in a way that is hard to trace."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from alexnet_lab import compat


def gone(name: str, library: str, version: str) -> str:
    return f"{name} is not in {library} {version} any more: update alexnet_lab/compat.py"


def test_the_fit_loops_batch_progress() -> None:
    """compat.batches_done and compat.at_last_batch read trainer.fit_loop.epoch_loop.batch_progress."""
    seen: list[tuple[int, bool]] = []

    class Record(lightning.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            seen.append((compat.batches_done(trainer), compat.at_last_batch(trainer)))

    trainer = lightning.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                callbacks=[Record()])  # fmt: skip
    trainer.fit(BoringModel())
    assert seen == [(1, False), (2, False), (3, True)], gone("fit_loop.epoch_loop.batch_progress", "lightning",
                                                             lightning.__version__)  # fmt: skip


@pytest.mark.parametrize(("val_every", "limit_val", "expected"),
                         [(0.5, 2, [False, True, False, True]), (1.0, 2, [False, False, False, True]),
                          (0.5, 0, [False] * 4)])  # fmt: skip
def test_the_epoch_loops_decision_to_validate(val_every: float, limit_val: int, expected: list[bool]) -> None:
    """compat.validates_after_this_step asks trainer.fit_loop.epoch_loop._should_check_val_fx, given
    fit_loop._data_fetcher: four batches, validated at each ``val_every`` of the epoch (none without batches)."""
    seen: list[bool] = []

    class Record(lightning.Callback):
        def on_train_batch_end(self, trainer, *args) -> None:
            seen.append(compat.validates_after_this_step(trainer))

    trainer = lightning.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=limit_val,
                                val_check_interval=val_every, num_sanity_val_steps=0, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                                callbacks=[Record()])  # fmt: skip
    trainer.fit(BoringModel())
    assert seen == expected, gone("fit_loop.epoch_loop._should_check_val_fx", "lightning", lightning.__version__)


def test_the_subprocess_script_launcher() -> None:
    """compat.HookedDDPStrategy patches _hydra_subprocess_cmd and _launch_process_observer inside Lightning's
    _SubprocessScriptLauncher, overrides its _call_children_scripts and the strategy's _configure_launcher."""
    from lightning.pytorch.strategies import DDPStrategy
    from lightning.pytorch.strategies.launchers import subprocess_script

    version = lightning.__version__
    for name in ("_SubprocessScriptLauncher", "_hydra_subprocess_cmd", "_launch_process_observer"):
        assert hasattr(subprocess_script, name), gone(f"subprocess_script.{name}", "lightning", version)
    assert list(inspect.signature(subprocess_script._hydra_subprocess_cmd).parameters) == ["local_rank"]
    launcher = subprocess_script._SubprocessScriptLauncher
    assert callable(getattr(launcher, "_call_children_scripts", None)), gone("_call_children_scripts", "lightning",
                                                                             version)  # fmt: skip
    assert callable(getattr(DDPStrategy, "_configure_launcher", None)), gone("DDPStrategy._configure_launcher",
                                                                             "lightning", version)  # fmt: skip
    source = inspect.getsource(launcher._call_children_scripts)
    assert "_hydra_subprocess_cmd(local_rank)" in source and "self.procs" in source, gone(
        "the call of _hydra_subprocess_cmd in _call_children_scripts", "lightning", version)  # fmt: skip


def test_hydras_basic_sweeper_and_its_error_report() -> None:
    """compat.basic_sweeper_jobs uses hydra._internal's BasicSweeper.split_arguments; compat.hydra_errors_explained
    patches hydra._internal.utils.run_and_report."""
    import hydra
    import hydra._internal.utils as hydra_utils
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra

    version = hydra.__version__
    assert callable(getattr(hydra_utils, "run_and_report", None)), gone("_internal.utils.run_and_report", "hydra",
                                                                        version)  # fmt: skip
    name = f"{BasicSweeper.__module__}.{BasicSweeper.__name__}"
    assert name == compat.BASIC_SWEEPER, gone(compat.BASIC_SWEEPER, "hydra", version)
    GlobalHydra.instance().clear()
    with hydra.initialize(version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        jobs = compat.basic_sweeper_jobs(["a=1,2", "b=x"], loader)
    GlobalHydra.instance().clear()
    assert jobs == [["a=1", "b=x"], ["a=2", "b=x"]], gone("BasicSweeper.split_arguments", "hydra", version)


def test_shared_memory_storage() -> None:
    """compat.shared_uint8 allocates with torch.UntypedStorage._new_shared."""
    assert hasattr(torch.UntypedStorage, "_new_shared"), gone("UntypedStorage._new_shared", "torch", torch.__version__)
    tensor = compat.shared_uint8((2, 3, 5))
    assert tensor.shape == (2, 3, 5) and tensor.dtype == torch.uint8 and tensor.is_shared()


def test_importing_the_package_or_the_report_loads_no_torch() -> None:
    """src/report.py writes a table: it must start without torch and Lightning (a side effect of an import would
    bring them)."""
    code = "import sys, alexnet_lab, alexnet_lab.report; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


PACKAGE = Path(compat.__file__).parent
PRIVATE = re.compile(r"(lightning|hydra|omegaconf|torch)[\w.]*\._[a-z]|import _[A-Za-z]|_SubprocessScriptLauncher|"
                     r"batch_progress|_internal|_get_node|_new_shared|_foreach_")  # fmt: skip


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_other_module_names_a_private_name_of_another_library(path: Path) -> None:
    found = PRIVATE.search(path.read_text())
    assert path.name == "compat.py" or found is None, f"{path.name} names {found and found[0]}: move it to compat.py"
