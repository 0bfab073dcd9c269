"""The entry points end to end, as a user runs them: src/train.py, src/eval.py, src/report.py."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from alexnet_lab.resume import checkpoint_facts
from conftest import REPO, made_once, run_in_process, run_script
from sample_layouts import write_layout

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
    assert result["val/top1_err"] < 0.1, result  # README: from 0.9 (chance, ten classes) to below 0.1
    assert result["val/images"] == 100
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "csv" / "metrics.csv").is_file()
    assert result["params"] == 60_965_224 - 4096 * 990 - 990  # the paper's net with a 10-way FC8


def report_rows(sweep: Path) -> list[list[str]]:
    """The job rows of report.md, as cells."""
    lines = (sweep / "report.md").read_text().splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines if re.match(r"\| \d+ \|", line)]


def run_lines(output: str) -> int:
    """How many trainings a sweep's output shows (Lightning prints this once per rank 0 at the end of fit)."""
    return output.count("`Trainer.fit` stopped")


@pytest.mark.slow(70)
def test_a_sweep_of_ddp_jobs_runs_each_job_cleanly(tmp_path: Path) -> None:
    """Hydra's basic launcher runs the jobs in one process: each two-process job must start its own rendezvous,
    not meet the previous job's process group or environment. Three two-process jobs in a row, then 1, 2."""
    sweep, sizes = tmp_path / "sweep", [2, 2, 2, 1, 2]
    # about 70 s on 2 cores: a job left waiting for the previous job's ranks raises TimeoutExpired at 300 s
    result = run_script("train.py", "-m", f"gpus={','.join(map(str, sizes))}", *SMOKE, f"hydra.sweep.dir={sweep}",
                        cwd=tmp_path, timeout=300)  # fmt: skip
    ok(result)
    assert list(tmp_path.iterdir()) == [sweep], "a child process made its own output dir"
    jobs = [str(n) for n in range(len(sizes))]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == jobs
    for job, gpus in zip(jobs, sizes, strict=True):
        assert yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())[0] == f"gpus={gpus}"
        assert summary(sweep / job)["val/images"] == 16, "4 classes x 4 val images, each counted once"
        assert (sweep / job / "train_rank1.log").is_file() == (gpus == 2), "rank 1 ran this job, in its dir"
        with open(sweep / job / "csv" / "metrics.csv", newline="") as f:
            assert {row["epoch"] for row in csv.DictReader(f) if row.get("train/loss_epoch")} == {"0", "1"}
    assert run_lines(result.stdout + result.stderr) == len(sizes), "each job trained once, by its own ranks"

    rows = report_rows(sweep)
    assert [row[1] for row in rows] == [f"gpus={gpus}" for gpus in sizes]
    # with the smoke preset's fixed widths, gpus=1 makes one column: conv2, conv4, conv5 see all their input maps
    params = [int(row[2].replace(",", "")) for row in rows]
    assert params[0] == params[1] == params[2] == params[4] < params[3]
    # the report's best error is the minimum over the job's epochs, read here from its metrics.csv
    for row, job in zip(rows, jobs, strict=True):
        with open(sweep / job / "csv" / "metrics.csv", newline="") as f:
            epochs = [r for r in csv.DictReader(f) if r.get("val/top1_err") and r["epoch"] in ("0", "1")]
        best = min(epochs, key=lambda r: float(r["val/top1_err"]))
        assert float(row[3]) == pytest.approx(100 * float(best["val/top1_err"]), abs=5e-3) and row[5] == best["epoch"]
    assert (sweep / "report.png").stat().st_size > 1000
    (sweep / "report.md").unlink()
    ok(run_in_process("report.py", str(sweep), cwd=tmp_path))
    assert report_rows(sweep) == rows, "src/report.py rebuilds the same report"


def train_epochs(job: Path) -> list[str]:
    """The epochs a job's metrics.csv has a training row for, in order."""
    with open(job / "csv" / "metrics.csv", newline="") as f:
        return [row["epoch"] for row in csv.DictReader(f) if row.get("train/loss_epoch")]


@pytest.mark.slow(40)
@pytest.mark.parametrize("gpus", [None, 2])
def test_a_sweep_resumed_with_ckpt_path_last(tmp_path: Path, gpus: int | None) -> None:
    """A sweep stopped after its first job is run again in its dir with ckpt_path=last: the finished job
    continues from its last.ckpt, and a job that had not started starts from scratch (in every rank)."""
    sweep, settings = (
        tmp_path / "sweep",
        [*SMOKE, *([f"gpus={gpus}"] if gpus else []), f"hydra.sweep.dir={tmp_path / 'sweep'}"],
    )
    ok(run_script("train.py", "-m", "seed=0", "trainer.max_epochs=1", *settings, cwd=tmp_path))
    assert train_epochs(sweep / "0") == ["0"]
    result = run_script("train.py", "-m", "seed=0,1", "trainer.max_epochs=2", "ckpt_path=last", *settings, cwd=tmp_path)
    ok(result)
    output = result.stdout + result.stderr
    assert f"Restoring states from the checkpoint path at {sweep / '0' / 'checkpoints' / 'last.ckpt'}" in output
    assert output.count("this job of the sweep has no last.ckpt yet: starting it from scratch") == 1
    assert train_epochs(sweep / "0") == ["0", "1"], "job 0 kept its first epoch and trained the second"
    assert train_epochs(sweep / "1") == ["0", "1"], "job 1 trained both"
    for job in ("0", "1"):
        assert summary(sweep / job)["val/images"] == 16
    rows = report_rows(sweep)
    assert [row[1] for row in rows] == ["seed=0", "seed=1"] and all(row[5] in ("0", "1") for row in rows)


@pytest.mark.slow(60)
def test_a_ddp_sweep_with_the_submitit_launcher(tmp_path: Path) -> None:
    """submitit runs each job in a process of its own (here on this machine: submitit_local, every job at once),
    whose command line is submitit's, not src/train.py's: the DDP ranks must still run src/train.py with the
    job's overrides, and two two-process jobs running side by side must each meet its own ranks."""
    sweep, sizes = tmp_path / "sweep", [2, 1, 2]
    result = run_script("train.py", "-m", "hydra/launcher=submitit_local", f"gpus={','.join(map(str, sizes))}", *SMOKE,
                        "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=300)  # fmt: skip
    ok(result)
    for job, gpus in enumerate(sizes):
        assert yaml.safe_load((sweep / str(job) / ".hydra" / "overrides.yaml").read_text())[0] == f"gpus={gpus}"
        assert summary(sweep / str(job))["val/images"] == 16, "4 classes x 4 val images, each counted once"
        assert (sweep / str(job) / "train_rank1.log").is_file() == (gpus == 2), "rank 1 ran this job, in its dir"
    assert [row[1] for row in report_rows(sweep)] == [f"gpus={gpus}" for gpus in sizes]


@pytest.mark.slow(25)
def test_a_sweep_by_steps_reports_each_jobs_validation_after_training(tmp_path: Path) -> None:
    """trainer.max_steps=3 ends each job within its first epoch (the smoke preset's epoch is 4 steps), which
    Lightning then validates nowhere: the report's row is the validation src/train.py ran after training, the
    numbers its summary.json records, as epoch "end", and the LRN ablation compares the two jobs."""
    sweep = tmp_path / "sweep"
    ok(run_script("train.py", "-m", "norm=lrn,none", *SMOKE, "trainer.max_steps=3", f"hydra.sweep.dir={sweep}",
                  cwd=tmp_path))  # fmt: skip
    rows = report_rows(sweep)
    for row, job in zip(rows, ("0", "1"), strict=True):
        recorded = summary(sweep / job)
        assert recorded["last"] == {"epoch": 0}, "no epoch validated"
        expected = [f"{100 * recorded['val/top1_err']:.2f}", f"{100 * recorded['val/top5_err']:.2f}", "end"]
        assert row[3:6] == expected and row[6:8] == expected[:2]
    assert "| LRN (section 3.3) | norm=lrn | norm=none | 1 vs 1 |" in (sweep / "report.md").read_text()


@pytest.fixture
def smoke_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seeds of the smoke preset in one sweep, logged to W&B (offline) and CSV, with tags; made once for
    the tests that read it."""

    def make(folder: Path) -> None:
        ok(run_script("train.py", "-m", "experiment=smoke", "seed=0,1", "tags=[baseline,v2]",
                      f"hydra.sweep.dir={folder / 'sweep'}", cwd=folder))  # fmt: skip

    return made_once(tmp_path_factory, "smoke-sweep", make) / "sweep"


def wandb_run(job: Path) -> tuple[Any, list[Any]]:
    """The run record and the metric definitions of a job's offline W&B run."""
    from wandb.proto import wandb_internal_pb2

    (run,) = list((job / "wandb").glob("offline-run-*"))  # one W&B run per job
    run_record, metrics = None, []
    for data in wandb_records(next(run.glob("*.wandb"))):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_record = record.run
        elif kind == "metric":
            metrics.append(record.metric)
    return run_record, metrics


def test_wandb_one_run_per_job_grouped_by_sweep_and_by_seedless_variant(smoke_sweep: Path) -> None:
    runs = [wandb_run(smoke_sweep / job) for job in ("0", "1")]
    for seed, (record, metrics) in enumerate(runs):
        assert record.project == "alexnet-lab" and record.run_group == smoke_sweep.name  # group = the sweep
        assert record.display_name == f"experiment=smoke,seed={seed},tags=[baseline,v2]"
        assert record.job_type == "experiment=smoke,tags=[baseline,v2]", "jobs that differ only by seed share one"
        assert set(record.tags) == {"norm=lrn", "pooling=overlap", "activation=relu", "init=paper", "gpus=None",
                                    "baseline", "v2"}  # the choices, and tags=[...]  # fmt: skip
        config = {item.key: json.loads(item.value_json) for item in record.config.update}
        assert config["choices"]["pooling"] == "overlap" and config["model"]["net"]["columns"] == 2
        assert config["seed"] == seed
        (summary_min,) = [m for m in metrics if m.name == "val/top1_err"]
        assert summary_min.summary.min, "val/top1_err is summarised as its minimum"
    assert runs[0][0].run_id != runs[1][0].run_id


def test_summary_states_the_last_and_the_best_epoch_the_crops_and_the_tags(smoke_sweep: Path) -> None:
    job = smoke_sweep / "0"
    result = summary(job)
    assert result["tags"] == ["baseline", "v2"]
    assert "Tags: baseline, v2" in (smoke_sweep / "report.md").read_text().splitlines()
    with open(job / "csv" / "metrics.csv", newline="") as f:
        epochs = [r for r in csv.DictReader(f) if r.get("val/top1_err") and r["epoch"] in ("0", "1")]
    last, best = epochs[-1], min(epochs, key=lambda r: float(r["val/top1_err"]))
    assert result["crops"] == "centre crop"
    assert result["last"] == {"epoch": 1, "top1_err": pytest.approx(float(last["val/top1_err"])),
                              "top5_err": pytest.approx(float(last["val/top5_err"]))}  # fmt: skip
    assert result["best"]["selected_on"] == "val" and result["best"]["epoch"] == int(best["epoch"])
    assert result["best"]["top1_err"] == pytest.approx(float(best["val/top1_err"]))
    # checkpoints/epochNNN.ckpt is that best epoch
    assert Path(result["best_ckpt"]).name == f"epoch{int(best['epoch']):03d}.ckpt"
    assert checkpoint_facts(result["best_ckpt"]).epoch == int(best["epoch"])


def test_ckpt_path_last_continues_the_newest_run_with_the_same_overrides(smoke_sweep: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    for name, age in (("older", 200), ("newer", 100)):  # two earlier runs with the same overrides
        shutil.copytree(smoke_sweep / "0", outputs / name)
        past = time.time() - age
        os.utime(outputs / name / "checkpoints" / "last.ckpt", (past, past))
    resumed = tmp_path / "resumed"
    result = run_script("train.py", "experiment=smoke", "seed=0", "tags=[baseline,v2]", "ckpt_path=last",
                        "trainer.max_epochs=3", f"hydra.run.dir={resumed}", cwd=tmp_path,
                        env={"ALEXNET_LAB_OUTPUTS": str(outputs)})  # fmt: skip
    ok(result)
    newest = outputs / "newer" / "checkpoints" / "last.ckpt"
    assert f"Restoring states from the checkpoint path at {newest}" in result.stdout + result.stderr
    with open(resumed / "csv" / "metrics.csv", newline="") as f:
        epochs = {int(row["epoch"]) for row in csv.DictReader(f) if row.get("train/loss_epoch")}
    assert epochs == {2}, "the resumed run trained only the third epoch"


def centre_and_ten_crop_errors(ckpt: Path, root: Path, stats_file: Path) -> dict[str, tuple[float, float]]:
    """Top-1/top-5 error of a checkpoint on a folders-layout val split, computed here with torchvision's
    center_crop and ten_crop (its own implementation of section 4.1's ten patches) and the mean image."""
    from torchvision.transforms.v2 import functional as TF

    from alexnet_lab.data.layouts import load_rgb, read_split
    from alexnet_lab.data.transforms import preprocess
    from alexnet_lab.module import ClassifierModule

    model = ClassifierModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True).eval()
    size = model.net.input_size
    mean_image = torch.load(stats_file, weights_only=True)["mean_image"]
    wrong = {"centre": [0, 0], "ten": [0, 0]}
    samples = read_split(root, "val").samples
    for path, label in samples:
        centred = preprocess(load_rgb(path)).float() - mean_image
        with torch.no_grad():
            for name, crops in (("centre", [TF.center_crop(centred, [size, size])]),
                                ("ten", list(TF.ten_crop(centred, [size, size])))):  # fmt: skip
                probs = torch.softmax(model(torch.stack(crops)), dim=1).mean(dim=0)
                top5 = probs.topk(min(5, probs.numel())).indices.tolist()
                wrong[name][0] += top5[0] != label
                wrong[name][1] += label not in top5
    return {name: (w1 / len(samples), w5 / len(samples)) for name, (w1, w5) in wrong.items()}


@pytest.mark.slow(40)
def test_eval_centre_and_ten_crops_with_one_and_two_processes_on_101_images(smoke_sweep: Path,
                                                                            tmp_path: Path) -> None:  # fmt: skip
    root = write_layout(tmp_path / "val101", "folders", num_classes=4, train_per_class=2, val_per_class=26)
    for extra in sorted((root / "val").rglob("*.JPEG"))[:3]:
        extra.unlink()
    ckpt = smoke_sweep / "0" / "checkpoints" / "last.ckpt"
    data = [f"data.root={root}", "data.sample=null", "data.num_classes=4", "data.batch_size=16", "data.num_workers=0"]
    results = {}
    for gpus, run in ((1, run_in_process), (2, run_script)):
        out = tmp_path / f"eval{gpus}"
        ok(run("eval.py", f"ckpt_path={ckpt}", f"gpus={gpus}", *data, f"hydra.run.dir={out}", cwd=tmp_path))
        results[gpus] = json.loads((out / "eval.json").read_text())
    for crops, count in (("1_crop", 1), ("10_crop", 10)):
        assert results[1][crops]["images"] == results[2][crops]["images"] == 101
        assert results[1][crops]["crops"] == results[2][crops]["crops"] == count, "crops judged per image"
        for metric in ("top1_err", "top5_err"):
            assert results[1][crops][metric] == results[2][crops][metric], (crops, metric)
    # the same numbers from torchvision's crops, within one image (a near tie may round the other way)
    expected = centre_and_ten_crop_errors(ckpt, root, root.parent / f"{root.name}-stats.pt")
    for crops, name in (("1_crop", "centre"), ("10_crop", "ten")):
        for metric, value in zip(("top1_err", "top5_err"), expected[name], strict=True):
            assert abs(results[1][crops][metric] - value) <= 1 / 101 + 1e-6, (crops, metric)


def test_eval_of_an_ensemble_reports_each_member_as_a_sweep_of_evals_does_without_a_training_report(
    smoke_sweep: Path, tmp_path: Path
) -> None:
    a, b = (smoke_sweep / job / "checkpoints" / "last.ckpt" for job in ("0", "1"))
    # the smoke preset's sample (eval.yaml has no experiment group)
    data = ["data.num_classes=4", "data.sample.train_per_class=8", "data.sample.val_per_class=4",
            "data.num_workers=0", "test_crops=[1]"]  # fmt: skip
    sweep = tmp_path / "sweep"  # each member alone: one sweep of src/eval.py
    ok(run_script("eval.py", "-m", f"ckpt_path={a},{b}", *data, f"hydra.sweep.dir={sweep}", cwd=tmp_path))
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]  # report.md is a training sweep's
    ok(run_in_process("eval.py", f"ckpt_path=[{a},{b}]", *data, f"hydra.run.dir={tmp_path / 'ab'}", cwd=tmp_path))
    alone = {name: json.loads((sweep / job / "eval.json").read_text()) for name, job in (("a", "0"), ("b", "1"))}
    both = json.loads((tmp_path / "ab" / "eval.json").read_text())
    assert both["ckpt_path"] == [str(a), str(b)]
    for member, name in zip(both["members"], ("a", "b"), strict=True):
        assert member["1_crop"]["top1_err"] == alone[name]["1_crop"]["top1_err"]
        assert member["1_crop"]["top5_err"] == alone[name]["1_crop"]["top5_err"]
    assert both["1_crop"]["images"] == alone["a"]["1_crop"]["images"] == 16


@pytest.mark.slow(10)
def test_a_checkpoint_given_data_of_more_classes_than_it_tells_apart_stops_each_script_in_one_line(
    smoke_sweep: Path, tmp_path: Path
) -> None:
    """The smoke preset's net tells 4 classes apart; data=sample_smoke alone has the sample's 10 (eval.yaml and
    figures.yaml have no preset): eval and figures stop before reading an image, and so does a training run whose
    net is given fewer classes than its data."""
    ckpt = smoke_sweep / "0" / "checkpoints" / "last.ckpt"
    expected = (
        "error: data.num_classes=10 but the net tells 4 classes apart: give it data of its classes (data.num_classes=4)"
    )
    for script in ("eval.py", "figures.py"):
        result = run_in_process(script, f"ckpt_path={ckpt}", "data=sample_smoke", f"hydra.run.dir={tmp_path / script}",
                                cwd=tmp_path)  # fmt: skip
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and errors == [expected], result.stderr[-3000:]
        assert not (tmp_path / script / "eval.json").exists() and not (tmp_path / script / "fig3.png").exists()
    result = run_in_process("train.py", "experiment=smoke", "model.net.num_classes=3", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.splitlines()[-1] == (
        "error: data.num_classes=4 but the net tells 3 classes apart: give it data of its classes (data.num_classes=3)"
    )


def test_missing_data_root_gives_one_clear_line(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    result = run_in_process("train.py", "data=imagenet", f"data.root={nowhere}", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "kaggle" in errors[0]
    assert errors[0].startswith(f"error: data.root={nowhere} does not exist: set data.root=DIR (or IMAGENET_ROOT)")


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


def test_run_dirs_started_in_the_same_second_are_distinct(tmp_path: Path) -> None:
    """claim_dir, as Hydra resolves hydra.run.dir and hydra.sweep.dir: eight processes, one timestamp."""
    from alexnet_lab.config import claim_dir

    def claim(path: str, out: Path) -> None:
        out.write_text(claim_dir(path) + "\n" + claim_dir(path))  # asked twice: the same answer

    context = multiprocessing.get_context("fork")  # the resolver's memory starts empty in each child
    for kind in ("runs", "multiruns"):
        base = str(tmp_path / "train" / kind / "2026-11-23_18-42-05")
        procs = [context.Process(target=claim, args=(base, tmp_path / f"{kind}{i}.txt")) for i in range(8)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
            assert proc.exitcode == 0
        claimed = [(tmp_path / f"{kind}{i}.txt").read_text().split("\n") for i in range(8)]
        assert all(first == second for first, second in claimed)
        assert sorted(first for first, _ in claimed) == sorted([base] + [f"{base}_{n}" for n in range(2, 9)])
        assert sorted(p.name for p in Path(base).parent.iterdir()) == sorted(Path(c).name for c, _ in claimed)


@pytest.mark.slow(55)
def test_five_runs_started_at_once_on_a_fresh_cache_each_get_their_own_run_dir(tmp_path: Path) -> None:
    """Five runs that start together on an empty cache: one writes the sample and its statistics while the
    others wait for them (they used to compute them all, and one died when another removed its temp file)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ALEXNET_LAB_CACHE": str(tmp_path / "fresh-cache")}
    env.pop("PYTEST_CURRENT_TEST", None)
    command = [sys.executable, str(REPO / "src" / "train.py"), *SMOKE, "trainer.max_epochs=1"]
    procs = [
        subprocess.Popen([*command, f"seed={seed}"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for seed in range(5)
    ]  # fmt: skip
    outputs = []
    for proc in procs:
        outputs.append(proc.communicate(timeout=600)[0])
        assert proc.returncode == 0, outputs[-1][-3000:]
    every = "\n".join(outputs)
    assert every.count("writing the generated sample dataset") == 1, "the sample written once"
    assert every.count("computing the training-set mean and RGB covariance") == 1, "its statistics computed once"
    runs = sorted((tmp_path / "outputs" / "train" / "runs").iterdir())
    assert len(runs) == 5
    seeds = set()
    for run in runs:
        overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        seeds.add(next(o for o in overrides if o.startswith("seed=")))
        assert summary(run)["val/images"] == 16
        assert checkpoint_facts(run / "checkpoints" / "last.ckpt").global_step == 4
        with open(run / "csv" / "metrics.csv", newline="") as f:
            assert sorted(int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss_step")) == [0, 1, 2, 3]
    assert seeds == {f"seed={seed}" for seed in range(5)}, "each run dir holds one run's overrides"
