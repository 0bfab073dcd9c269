"""The entry points end to end, as a user runs them: src/train.py, src/eval.py, src/report.py."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from alexnet_lab.data.sample import write_layout
from alexnet_lab.resume import checkpoint_facts
from conftest import REPO, run_script

SMOKE = ["experiment=smoke", "logger=csv"]


def ok(result) -> None:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def wandb_records(path: Path) -> list[bytes]:
    """The records of a .wandb file: a ':W&B' header, then LevelDB-log blocks of 32 KiB whose chunks carry a
    4-byte checksum, a 2-byte length and a type (1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, records, pending = 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            records.append(pending)
            pending = b""
    return records


def summary(job: Path) -> dict:
    return json.loads((job / "summary.json").read_text())


@pytest.mark.slow(150)
def test_default_run_learns_on_the_sample(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    ok(run_script("train.py", f"hydra.run.dir={run_dir}", cwd=tmp_path))
    result = summary(run_dir)
    assert result["val/top1_err"] < 0.5, result  # chance is 0.9 with ten classes
    assert result["val/images"] == 100
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "csv" / "metrics.csv").is_file()
    assert result["params"] == 60_965_224 - 4096 * 990 - 990  # the paper's net with a 10-way FC8


@pytest.mark.slow(25)
def test_two_job_sweep_gives_two_dirs_and_a_two_row_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    ok(run_script("train.py", "-m", "pooling=overlap,nonoverlap", *SMOKE, f"hydra.sweep.dir={sweep}", cwd=tmp_path))
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    rows = [line for line in (sweep / "report.md").read_text().splitlines() if line.startswith("| ") and
            "pooling=" in line]  # fmt: skip
    assert len(rows) == 2 and "pooling=overlap" in rows[0] and "pooling=nonoverlap" in rows[1]
    assert (sweep / "report.png").stat().st_size > 1000
    (sweep / "report.md").unlink()
    ok(run_script("report.py", str(sweep), cwd=tmp_path))
    assert (sweep / "report.md").is_file()
    assert list(tmp_path.iterdir()) == [sweep], "a stray output dir appeared"


@pytest.mark.slow(25)
def test_ddp_sweep_over_gpus_runs_each_job_once_in_its_own_dir(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    result = run_script("train.py", "-m", "gpus=1,2", *SMOKE, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    ok(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"], "a child process made its own output dir"
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job, gpus in (("0", 1), ("1", 2)):
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        assert f"gpus={gpus}" in overrides
        result_job = summary(sweep / job)
        assert result_job["val/images"] == 16  # 4 classes x 4 val images, each counted once
        assert 0.0 <= result_job["val/top1_err"] <= 1.0
    assert (sweep / "1" / "train_rank1.log").is_file(), "rank 1 logs into its job's dir"
    assert not (sweep / "0" / "train_rank1.log").exists()
    # each job's ranks ran that job only: the sweep's two jobs each logged their own training once
    assert result.stdout.count("`Trainer.fit` stopped") + result.stderr.count("`Trainer.fit` stopped") == 2


@pytest.fixture(scope="module")
def smoke_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("smoke")
    ok(run_script("train.py", "experiment=smoke", f"hydra.run.dir={tmp / 'run'}", cwd=tmp))
    return tmp / "run"


def test_wandb_offline_run_has_group_tags_and_config(smoke_checkpoint: Path) -> None:
    runs = list((smoke_checkpoint / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    from wandb.proto import wandb_internal_pb2

    run_record = None
    for data in wandb_records(next(runs[0].glob("*.wandb"))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "run":
            run_record = record.run
    assert run_record is not None
    assert run_record.project == "alexnet-lab" and run_record.run_group == "run"
    assert set(run_record.tags) == {
        "norm=lrn",
        "pooling=overlap",
        "activation=relu",
        "init=paper",
        "gpus=None",
    }
    assert run_record.display_name == "experiment=smoke"
    config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert config["choices"]["pooling"] == "overlap" and config["model"]["net"]["columns"] == 2


def test_ckpt_path_last_continues_the_epoch_count(smoke_checkpoint: Path, tmp_path: Path) -> None:
    outputs = smoke_checkpoint.parent
    resumed = tmp_path / "resumed"
    ok(run_script("train.py", "experiment=smoke", "ckpt_path=last", "trainer.max_epochs=3",
                  f"hydra.run.dir={resumed}", cwd=tmp_path, env={"ALEXNET_LAB_OUTPUTS": str(outputs)}))  # fmt: skip
    with open(resumed / "csv" / "metrics.csv", newline="") as f:
        epochs = {int(row["epoch"]) for row in csv.DictReader(f) if row.get("train/loss_epoch")}
    assert epochs == {2}, "the resumed run trained only the third epoch"


@pytest.mark.slow(40)
def test_eval_with_one_and_two_processes_agrees_exactly_on_101_images(smoke_checkpoint: Path,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    root = write_layout(tmp_path / "val101", "folders", num_classes=4, train_per_class=2, val_per_class=26)
    for extra in sorted((root / "val").rglob("*.JPEG"))[:3]:
        extra.unlink()
    ckpt = smoke_checkpoint / "checkpoints" / "last.ckpt"
    data = [
        f"data.root={root}",
        "data.sample=null",
        "data.num_classes=4",
        "data.batch_size=16",
        "data.num_workers=0",
    ]
    results = {}
    for gpus in (1, 2):
        out = tmp_path / f"eval{gpus}"
        ok(run_script("eval.py", f"ckpt_path={ckpt}", f"gpus={gpus}", *data, f"hydra.run.dir={out}", cwd=tmp_path))
        results[gpus] = json.loads((out / "eval.json").read_text())
    for crops in ("1_crop", "10_crop"):
        assert results[1][crops]["images"] == results[2][crops]["images"] == 101
        for metric in ("top1_err", "top5_err"):
            assert results[1][crops][metric] == results[2][crops][metric], (crops, metric)


def test_bad_override_lists_the_options(tmp_path: Path) -> None:
    result = run_script("train.py", "pooling=foo", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'pooling/foo'" in result.stderr
    assert "nonoverlap" in result.stderr and "overlap" in result.stderr


def test_missing_data_root_gives_one_clear_line(tmp_path: Path) -> None:
    result = run_script("train.py", "data=imagenet", f"data.root={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not exist" in errors[0] and "kaggle" in errors[0]


def test_bad_gpus_value_gives_one_clear_line(tmp_path: Path) -> None:
    result = run_script("train.py", "gpus=3", *SMOKE, cwd=tmp_path)
    assert result.returncode == 2 and "gpus=3 is not a choice" in result.stderr
    assert "Traceback" not in result.stderr
    shutil.rmtree(tmp_path / "outputs", ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow(20)
def test_two_nodes_with_torchrun_on_localhost(tmp_path: Path) -> None:
    """trainer.num_nodes=2 with one torchrun per node, as on a cluster: both get the same hydra.run.dir."""
    run_dir, port = tmp_path / "run", free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={node}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                str(REPO / "src" / "train.py"),
                *SMOKE,
                "trainer.num_nodes=2",
                f"hydra.run.dir={run_dir}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for node in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-4000:]
    result = summary(run_dir)
    assert result["val/images"] == 16, "each val image counted once over the two nodes"
    assert checkpoint_facts(run_dir / "checkpoints" / "last.ckpt").global_step == 8, "2 epochs of 4 steps"
    assert "MEMBER: 1/2" in outputs[0] and "MEMBER: 2/2" in outputs[1], "one process per node, two in all"
