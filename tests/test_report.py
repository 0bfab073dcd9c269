"""The sweep report (alexnet_lab/report.py) on hand-made job dirs whose numbers are worked out here."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from matplotlib.colors import to_rgb
from omegaconf import OmegaConf

from alexnet_lab import report
from alexnet_lab.report import SweepReport, epochs_to, mean_std, write_report
from conftest import run_in_process

FIELDS = ["epoch", "step", "train/loss_epoch", "val/top1_err", "val/top5_err", "train/images_per_sec", "train/top1_err"]


def make_job(
    sweep: Path, number: int, overrides: list[str], top1: list[float], top5: list[float], train: list[float] = ()
) -> None:
    """A job dir as src/train.py leaves it: overrides, a summary, and metrics.csv with one val row per epoch
    (and the post-fit validation, logged under the next epoch, which is not part of the curve); ``train``, if
    given, is the training top-1 error of each epoch."""
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "summary.json").write_text(json.dumps({"params": 1000 + number, "crops": "centre crop"}))
    (job / "csv").mkdir()
    with open(job / "csv" / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for epoch, (e1, e5) in enumerate(zip(top1, top5, strict=True)):
            writer.writerow({"epoch": epoch, "step": 10 * epoch + 9, "train/loss_epoch": 1.0,
                             "train/images_per_sec": 100.0 + epoch,
                             "train/top1_err": train[epoch] if train else ""})  # fmt: skip
            writer.writerow({"epoch": epoch, "step": 10 * epoch + 9, "val/top1_err": e1, "val/top5_err": e5})
        writer.writerow({"epoch": len(top1), "step": 10 * len(top1), "val/top1_err": 0.0, "val/top5_err": 0.0})


def table(markdown: str, heading: str | None = None) -> list[list[str]]:
    """The rows of the first table after ``heading`` (or of the first table), as cells."""
    text = markdown if heading is None else markdown.split(heading, 1)[1]
    rows, started = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not re.fullmatch(r"-+:?", cells[0]) and cells[0] not in ("job", "variant", "ablation", "neuron"):
                rows.append(cells)
        elif started:
            break
    return rows


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """pooling=overlap,nonoverlap x seed=0,1,2: the overlap jobs are 0.5 points better on average."""
    sweep = tmp_path / "sweep"
    curves = {
        ("overlap", 0): ([0.60, 0.42, 0.45], [0.30, 0.20, 0.22]),
        ("overlap", 1): ([0.61, 0.40, 0.41], [0.31, 0.19, 0.18]),
        ("overlap", 2): ([0.62, 0.41, 0.43], [0.32, 0.21, 0.20]),
        ("nonoverlap", 0): ([0.65, 0.46, 0.47], [0.35, 0.23, 0.24]),
        ("nonoverlap", 1): ([0.64, 0.45, 0.45], [0.34, 0.22, 0.22]),
        ("nonoverlap", 2): ([0.66, 0.455, 0.46], [0.36, 0.225, 0.23]),
    }
    for number, ((pooling, seed), (top1, top5)) in enumerate(curves.items()):
        make_job(sweep, number, [f"pooling={pooling}", f"seed={seed}", "experiment=smoke"], top1, top5)
    return sweep


def test_the_job_rows_give_the_best_and_the_last_epoch(sweep: Path) -> None:
    markdown, picture = write_report(sweep)
    rows = table(markdown.read_text())
    # README: the choices that differ, parameters, val top-1/top-5 at the best epoch and its number, at the
    # last epoch, and images/s; the crop protocol is stated
    header = next(line for line in markdown.read_text().splitlines() if line.startswith("| job |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "job", "choices", "parameters", "best top-1 %", "best top-5 %", "best epoch", "last top-1 %", "last top-5 %",
        "images/s"]  # fmt: skip
    assert "centre crop" in markdown.read_text()
    assert [row[1] for row in rows] == ["pooling=overlap seed=0", "pooling=overlap seed=1", "pooling=overlap seed=2",
                                        "pooling=nonoverlap seed=0", "pooling=nonoverlap seed=1",
                                        "pooling=nonoverlap seed=2"]  # fmt: skip
    # job 0: top-1 0.60, 0.42, 0.45 -> best 42.00 at epoch 1 (its top-5 then: 20.00), last 45.00 / 22.00
    assert rows[0][2:] == ["1,000", "42.00", "20.00", "1", "45.00", "22.00", "101.0"]
    # job 1: the last epoch is also its best; the post-fit validation (logged as epoch 3) is not an epoch
    assert rows[1][3:8] == ["40.00", "19.00", "1", "41.00", "18.00"]
    assert picture.stat().st_size > 1000


def test_seeds_are_grouped_with_mean_and_std(sweep: Path) -> None:
    markdown = write_report(sweep)[0].read_text()
    groups = table(markdown, "## Over seeds")
    assert [row[:2] for row in groups] == [["pooling=overlap,experiment=smoke", "3"],
                                           ["pooling=nonoverlap,experiment=smoke", "3"]]  # fmt: skip
    # overlap's best top-1: 42, 40, 41 -> mean 41.00, sample std 1.00; last top-1: 45, 41, 43 -> 43.00 ± 2.00
    assert groups[0][2] == "41.00 ± 1.00" and groups[0][4] == "43.00 ± 2.00"
    # nonoverlap's best top-1: 46, 45, 45.5 -> 45.50 ± 0.50
    assert groups[1][2] == "45.50 ± 0.50"


def drawn(monkeypatch: pytest.MonkeyPatch, sweep: Path) -> dict[str, Any]:
    """write_report's figures by file name (report.png, fig1.png), as they are saved."""
    figures = {}
    real_save = report.save_figure

    def save(fig: Any, path: Path, **kwargs: Any) -> Path:
        figures[path.name] = fig
        return real_save(fig, path, **kwargs)

    monkeypatch.setattr(report, "save_figure", save)
    write_report(sweep)
    return figures


def curves(fig: Any) -> dict[str, list[tuple[float, float]]]:
    """Each labelled line's (x, y) points."""
    return {line.get_label(): [(x, round(y, 6)) for x, y in line.get_xydata()] for line in fig.axes[0].lines}


def bands(fig: Any) -> dict[str, dict[int, tuple[float, float]]]:
    """Each line's band (fill_between's polygon, drawn after its line): its lowest and highest y at each x."""
    ax, found = fig.axes[0], {}
    for line, band in zip(ax.lines, ax.collections, strict=True) if ax.collections else ():
        points = band.get_paths()[0].vertices
        at = {x: points[points[:, 0] == x, 1] for x in set(points[:, 0])}
        found[line.get_label()] = {int(x): (round(min(ys), 6), round(max(ys), 6)) for x, ys in at.items()}
    return found


def test_report_png_draws_each_variants_mean_over_seeds_with_a_band_of_one_std(
    sweep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picture = drawn(monkeypatch, sweep)["report.png"]
    # val top-1 in % per epoch over seeds 0, 1, 2 (the fixture): overlap 60 61 62 | 42 40 41 | 45 41 43, so means
    # 61, 41, 43 and sample stds 1, 1, 2; nonoverlap 65 64 66 | 46 45 45.5 | 47 45 46: 65, 45.5, 46 and 1, 0.5, 1
    overlap, nonoverlap = "pooling=overlap,experiment=smoke (n=3)", "pooling=nonoverlap,experiment=smoke (n=3)"
    assert curves(picture) == {
        overlap: [(0, 61.0), (1, 41.0), (2, 43.0)],
        nonoverlap: [(0, 65.0), (1, 45.5), (2, 46.0)],
    }
    assert bands(picture) == {
        overlap: {0: (60.0, 62.0), 1: (40.0, 42.0), 2: (41.0, 45.0)},
        nonoverlap: {0: (64.0, 66.0), 1: (45.0, 46.0), 2: (45.0, 47.0)},
    }
    ax = picture.axes[0]
    for line, band in zip(ax.lines, ax.collections, strict=True):  # each band in its line's colour
        assert to_rgb(band.get_facecolor()[0]) == to_rgb(line.get_color())
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("epoch", "val top-1 error (%)", "Sweep sweep")


def validated_only(job: Path, epochs: set[int]) -> None:
    """Keeps the job's validation rows of ``epochs`` alone (as trainer.check_val_every_n_epoch would log)."""
    with open(job / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(job / "csv" / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(r for r in rows if not r["val/top1_err"] or int(r["epoch"]) in epochs)


def test_report_png_draws_one_line_per_job_without_seeds_and_no_band_for_one_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone, seeded = tmp_path / "alone", tmp_path / "seeded"
    make_job(alone, 0, ["norm=lrn"], [0.5, 0.4, 0.3, 0.2], [0.2] * 4)
    validated_only(alone / "0", {1, 3})
    make_job(alone, 1, ["norm=none"], [0.55, 0.45, 0.425], [0.2, 0.15, 0.1])
    picture = drawn(monkeypatch, alone)["report.png"]
    # the differing choice labels each job, at the epochs it validated; the post-fit validation (logged as the
    # next epoch) is no point
    assert curves(picture) == {"norm=lrn": [(1, 40.0), (3, 20.0)], "norm=none": [(0, 55.0), (1, 45.0), (2, 42.5)]}
    assert bands(picture) == {}
    jobs = [("bn", 0, []), ("lrn", 0, [0.6, 0.2]), ("none", 0, [0.55, 0.5]), ("lrn", 1, [0.6, 0.3])]
    for number, (norm, seed, top1) in enumerate(jobs):
        make_job(seeded, number, [f"norm={norm}", f"seed={seed}"], top1, [0.1] * len(top1))
    validated_only(seeded / "2", {1})
    picture = drawn(monkeypatch, seeded)["report.png"]
    # bn trained no epoch: no line, and the variants after it are drawn; lrn: 60 and 60 (std 0), 20 and 30
    # (std 7.07); none: its one job, validated after epoch 1 only, whose band has no width (no std of one value)
    assert curves(picture) == {"norm=lrn (n=2)": [(0, 60.0), (1, 25.0)], "norm=none (n=1)": [(1, 50.0)]}
    spread = round(math.sqrt(50), 6)
    assert bands(picture) == {
        "norm=lrn (n=2)": {0: (60.0, 60.0), 1: (25.0 - spread, 25.0 + spread)},
        "norm=none (n=1)": {1: (50.0, 50.0)},
    }


def test_the_paper_quantified_ablation_is_reported_beside_its_claim(sweep: Path) -> None:
    markdown = write_report(sweep)[0].read_text()
    (row,) = table(markdown, "## The paper's ablations")
    assert row[:4] == ["overlapping pooling (3.4)", "pooling=overlap", "pooling=nonoverlap", "3 vs 3"]
    # top-1: 41.00 - 45.50 = -4.50, std sqrt(1.0^2 / 3 + 0.5^2 / 3) = 0.645
    spread = math.sqrt(1.0**2 / 3 + 0.5**2 / 3)
    assert row[4] == f"-4.50 ± {spread:.2f}" and row[6] == "-0.4 / -0.3"
    # top-5 at each job's best epoch: overlap 20, 19, 21 (20 ± 1); nonoverlap 23, 22, 22.5 (22.5 ± 0.5)
    assert row[5] == f"-2.50 ± {spread:.2f}"


@pytest.mark.parametrize(
    ("paper", "other", "name", "claim"),
    [
        # 3.3: "Response normalization reduces our top-1 and top-5 error rates by 1.4% and 1.2%, respectively."
        ("norm=lrn", "norm=none", "LRN (section 3.3)", "-1.4 / -1.2"),
        # 3.4: overlapping pooling "reduces the top-1 and top-5 error rates by 0.4% and 0.3%, respectively"
        ("pooling=overlap", "pooling=nonoverlap", "overlapping pooling (3.4)", "-0.4 / -0.3"),
        # 3.2: "This scheme reduces our top-1 and top-5 error rates by 1.7% and 1.2%, respectively"
        ("gpus=2", "gpus=1", "two GPUs (3.2)", "-1.7 / -1.2"),
        # 4.1: the PCA lighting "reduces the top-1 error rate by over 1%"
        ("data.lighting_std=0.1", "data.lighting_std=0", "PCA lighting (4.1)", "top-1 < -1"),
    ],
)
def test_each_ablation_the_paper_quantifies_is_reported_beside_the_papers_numbers(
    tmp_path: Path, paper: str, other: str, name: str, claim: str
) -> None:
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, [paper], [0.5, 0.4], [0.2, 0.1])
    make_job(sweep, 1, [other], [0.5, 0.45], [0.2, 0.15])
    (row,) = table(write_report(sweep)[0].read_text(), "## The paper's ablations")
    assert row == [name, paper, other, "1 vs 1", "-5.00", "-5.00", claim]


def test_no_seed_table_without_seeds_and_the_script(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["norm=lrn"], [0.5, 0.4], [0.2, 0.1])
    make_job(sweep, 1, ["norm=none"], [0.5, 0.45], [0.2, 0.15])
    result = run_in_process("report.py", str(sweep), cwd=tmp_path)
    assert result.returncode == 0 and str(sweep / "report.md") in result.stdout
    markdown = (sweep / "report.md").read_text()
    assert "## Over seeds" not in markdown
    (row,) = table(markdown, "## The paper's ablations")
    assert row[:6] == ["LRN (section 3.3)", "norm=lrn", "norm=none", "1 vs 1", "-5.00", "-5.00"]  # no std with n=1


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("missing", "missing is not a folder: give the folder of a -m run"),
        ("empty", "empty is not a sweep's folder (no <job>/.hydra/overrides.yaml in it): give the folder of a -m run"),
        ("one_run", "one_run is one run's folder (no <job>/.hydra/overrides.yaml in it): give the folder of a -m run"),
    ],
)  # fmt: skip
def test_the_script_refuses_a_folder_that_is_not_a_sweep(tmp_path: Path, given: str, expected: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "one_run" / ".hydra").mkdir(parents=True)  # a single run's dir: .hydra/ in itself
    (tmp_path / "one_run" / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["norm=lrn"]))
    before = sorted(tmp_path.rglob("*"))
    result = run_in_process("report.py", given, cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and errors == [f"error: {expected}, e.g. outputs/train/multiruns/<date_time>"]
    assert sorted(tmp_path.rglob("*")) == before  # no report written


def test_the_reports_small_numbers_by_hand(tmp_path: Path) -> None:
    """Two seeds have a std (n - 1: sqrt(2) x half their gap); a job that logged no images/s shows nan, not a
    crash; Figure 1's epochs to 25% count an epoch at exactly 25% as not below it."""
    assert mean_std([40.0, 42.0]) == (41.0, pytest.approx(math.sqrt(2.0)))
    assert math.isnan(mean_std([40.0])[1]) and math.isnan(mean_std([])[0])
    assert epochs_to([(0, 0.5), (1, 0.25), (2, 0.2499)], 0.25) == 3 and epochs_to([(0, 0.3)], 0.25) is None
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["seed=0"], [0.5], [0.2])
    path = sweep / "0" / "csv" / "metrics.csv"
    path.write_text(path.read_text().replace(",100.0", ","))  # no train/images_per_sec logged
    (row,) = table(write_report(sweep)[0].read_text())
    assert row[-1] == "nan"


def test_the_whole_report_of_a_small_sweep_reads_as_worked_out_here(tmp_path: Path) -> None:
    """Every line of report.md for six jobs: two seeds of one variant, a job without summary.json, a job that
    logged no epoch, a job that diverged, the jobs' tags, an LRN ablation and Figure 1's table. Each number is
    worked out in the comments."""
    sweep, smoke = tmp_path / "sweep", "experiment=smoke"  # smoke: in every job, so in no job's choices
    make_job(sweep, 0, ["norm=lrn", "activation=relu", "seed=0", smoke], [0.50, 0.30], [0.20, 0.12], [0.40, 0.20])
    make_job(sweep, 1, ["norm=lrn", "activation=tanh", "seed=0", smoke], [0.55, 0.35, 0.36], [0.25, 0.15, 0.16],
             [0.6, 0.4, 0.3])  # fmt: skip
    make_job(sweep, 2, ["norm=none", "activation=relu", "seed=0", smoke], [0.6, 0.4], [0.3, 0.2], [0.5, 0.24])
    (sweep / "2" / "summary.json").unlink()  # parameters unknown: "-"
    make_job(sweep, 3, ["norm=lrn", "activation=relu", "seed=1", smoke], [0.48, 0.34, 0.36], [0.18, 0.14, 0.15],
             [0.30, 0.10, 0.21])  # fmt: skip
    make_job(sweep, 4, ["norm=lrn", "activation=tanh", "seed=1", smoke], [], [])
    (sweep / "4" / "csv" / "metrics.csv").write_text(",".join(FIELDS) + "\n")  # died before its first epoch
    make_job(sweep, 5, ["norm=none", "activation=relu", "seed=1", smoke], [0.9], [0.7])
    (sweep / "5" / "summary.json").write_text(json.dumps({"params": 1005, "diverged_at_step": 13}))
    for job, tags in ((0, ["v2", "baseline"]), (3, ["v2", "alpha"])):
        (sweep / str(job) / "summary.json").write_text(json.dumps({"params": 1000 + job, "tags": tags}))
    expected = [
        "# Sweep report: sweep",
        "",
        "Tags: alpha, baseline, v2",  # every job's, each once, sorted
        "",
        "Val error in %, centre crop. *best*: the epoch with the lowest top-1 error, selected on the validation set "
        "itself (optimistic); *last*: the final epoch.",
        "",
        "| job | choices | parameters | best top-1 % | best top-5 % | best epoch | last top-1 % | last top-5 % "
        "| images/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        # best = the lowest top-1 (its top-5 beside it), last = the final epoch; images/s: the mean of 100 + epoch
        "| 0 | norm=lrn activation=relu seed=0 | 1,000 | 30.00 | 12.00 | 1 | 30.00 | 12.00 | 100.5 |",
        "| 1 | norm=lrn activation=tanh seed=0 | 1,001 | 35.00 | 15.00 | 1 | 36.00 | 16.00 | 101.0 |",
        "| 2 | norm=none activation=relu seed=0 | - | 40.00 | 20.00 | 1 | 40.00 | 20.00 | 100.5 |",
        "| 3 | norm=lrn activation=relu seed=1 | 1,003 | 34.00 | 14.00 | 1 | 36.00 | 15.00 | 101.0 |",
        "| 4 | norm=lrn activation=tanh seed=1 | 1,004 | nan | nan | - | nan | nan | nan |",
        # not a result: its errors are not shown (its one epoch's 90% would be its best and its last)
        "| 5 | norm=none activation=relu seed=1 | 1,005 | diverged at step 13 | diverged at step 13 | 0 | "
        "diverged at step 13 | diverged at step 13 | 100.0 |",
        "",
        "## Over seeds (mean ± std)",
        "",
        "| variant | n | best top-1 % | best top-5 % | last top-1 % | last top-5 % |",
        "|---|---:|---:|---:|---:|---:|",
        # jobs 0 and 3: best 30, 34 -> 32 ± sqrt(8) = 2.83; 12, 14 -> 13 ± sqrt(2) = 1.41; last 30, 36 ->
        # 33 ± sqrt(18) = 4.24; 12, 15 -> 13.5 ± sqrt(4.5) = 2.12
        "| norm=lrn,activation=relu,experiment=smoke | 2 | 32.00 ± 2.83 | 13.00 ± 1.41 | 33.00 ± 4.24 | 13.50 ± 2.12 |",
        # job 4 has no error to average: the mean is job 1's alone, and n says so
        "| norm=lrn,activation=tanh,experiment=smoke | 1 of 2 | 35.00 | 15.00 | 36.00 | 16.00 |",
        # job 5 diverged: job 2's errors alone, and n says so
        "| norm=none,activation=relu,experiment=smoke | 1 of 2 | 40.00 | 20.00 | 40.00 | 20.00 |",
        "",
        "## The paper's ablations (best error, paper's choice minus the other, in points)",
        "",
        "| ablation | paper's choice | other | n | Δ top-1 | Δ top-5 | the paper |",
        "|---|---|---|---|---:|---:|---|",
        # 32 - 40 and 13 - 20, without the diverged job 5; no std with one job on a side. Section 3.3: "reduces
        # our top-1 and top-5 error rates by 1.4% and 1.2%"
        "| LRN (section 3.3) | norm=lrn | norm=none | 2 vs 1 | -8.00 | -7.00 | -1.4 / -1.2 |",
        "",
        "## Figure 1: epochs to 25% training error, ReLU vs tanh",
        "",
        "| neuron | fastest job | its choices | epochs to 25% | jobs tried |",
        "|---|---|---|---:|---:|",
        # ReLU jobs 0, 2, 3 are all below 25% after 2 epochs; the tie goes to the lowest final training error:
        # 0.20 (job 0) against 0.24 and 0.21. tanh's one job (4 logged no epoch) never gets below 25%.
        "| relu | 0 | norm=lrn activation=relu seed=0 | 2 | 3 |",
        "| tanh | 1 | norm=lrn activation=tanh seed=0 | not in 3 | 1 |",
        "",
        "tanh / ReLU: n/a (a neuron did not reach 25%) (the paper: about 6)",
    ]
    markdown, picture = write_report(sweep)
    assert markdown.read_text() == "\n".join(expected) + "\n"
    assert picture == sweep / "report.png" and (sweep / "fig1.png").stat().st_size > 1000


def test_jobs_are_listed_in_their_numbers_order_past_nine(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for number in range(12):
        make_job(sweep, number, [f"seed={number}"], [0.5], [0.2])
    assert [row[0] for row in table(write_report(sweep)[0].read_text())] == [str(n) for n in range(12)]  # not 0, 1, 10


def test_the_crop_protocol_is_each_jobs_own(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["seed=0"], [0.5], [0.2])
    (sweep / "0" / "summary.json").write_text(json.dumps({"params": 5, "crops": "10 crops"}))
    assert "Val error in %, 10 crops. *best*" in write_report(sweep)[0].read_text()
    make_job(sweep, 1, ["seed=1"], [0.5], [0.2])  # its summary says centre crop
    assert "Val error in %, 10 crops / centre crop. *best*" in write_report(sweep)[0].read_text()


def test_a_sweeps_only_job_has_the_defaults_as_its_choices(tmp_path: Path) -> None:
    make_job(tmp_path / "sweep", 0, ["norm=lrn"], [0.5], [0.2])
    assert table(write_report(tmp_path / "sweep")[0].read_text())[0][1] == "(defaults)"  # nothing differs


def test_variants_whose_jobs_all_died_show_no_mean_and_no_effect(tmp_path: Path) -> None:
    """A variant without a validated epoch: "-" over seeds, and no ablation row against it; an ablation with two
    "other" values (PCA lighting: 0 and 0.0) still compares with the one that has results."""
    sweep = tmp_path / "sweep"
    jobs = [("data.lighting_std=0.1", 0, [0.4]), ("data.lighting_std=0", 0, []), ("data.lighting_std=0", 1, []),
            ("data.lighting_std=0.0", 0, [0.5])]  # fmt: skip
    for number, (choice, seed, top1) in enumerate(jobs):
        make_job(sweep, number, [choice, f"seed={seed}"], top1, [e / 2 for e in top1])
        if not top1:
            (sweep / str(number) / "csv" / "metrics.csv").write_text(",".join(FIELDS) + "\n")
    markdown = write_report(sweep)[0].read_text()
    assert table(markdown, "## Over seeds")[1] == ["data.lighting_std=0", "0 of 2", "-", "-", "-", "-"]
    (row,) = table(markdown, "## The paper's ablations")
    assert row[1:5] == ["data.lighting_std=0.1", "data.lighting_std=0.0", "1 vs 1", "-10.00"]


def test_a_job_that_max_steps_ended_within_its_first_epoch_reports_its_validation_after_training(
    tmp_path: Path,
) -> None:
    """trainer.max_steps within the first epoch: Lightning validates no epoch, and src/train.py validates once after
    training (metrics.csv logs it under the next epoch; summary.json records it as the best, of no epoch). The row
    shows that validation as epoch "end", and the jobs count over seeds and in the paper's ablations: LRN's
    top-1 60% - 62.5% = -2.5 points, top-5 30% - 31% = -1 point."""
    sweep = tmp_path / "sweep"
    for number, (norm, top1, top5) in enumerate([("lrn", 0.6, 0.3), ("none", 0.625, 0.31)]):
        make_job(sweep, number, [f"norm={norm}"], [], [])
        with open(sweep / str(number) / "csv" / "metrics.csv", "w", newline="") as f:  # as a real run's
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerow({"epoch": 0, "step": 1, "train/loss_epoch": 1.4, "train/images_per_sec": 200.0})
            writer.writerow({"epoch": 1, "step": 2, "val/top1_err": top1, "val/top5_err": top5})
        summary = {"params": 1000, "best": {"epoch": None, "top1_err": top1, "top5_err": top5, "selected_on": "val"}}
        (sweep / str(number) / "summary.json").write_text(json.dumps(summary))
    markdown = write_report(sweep)[0].read_text()
    rows = table(markdown)
    assert [row[3:8] for row in rows] == [["60.00", "30.00", "end", "60.00", "30.00"],
                                          ["62.50", "31.00", "end", "62.50", "31.00"]]  # fmt: skip
    (ablation,) = table(markdown, "## The paper's ablations")
    assert ablation[1:6] == ["norm=lrn", "norm=none", "1 vs 1", "-2.50", "-1.00"]


def test_the_sweep_callback_writes_the_report_when_the_sweep_ends(tmp_path: Path, capsys) -> None:
    make_job(tmp_path / "sweep", 0, ["norm=lrn"], [0.5], [0.2])
    SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}}))
    assert (tmp_path / "sweep" / "report.md").is_file() and (tmp_path / "sweep" / "report.png").is_file()
    assert capsys.readouterr().out == f"sweep report: {tmp_path / 'sweep' / 'report.md'}\n"


def test_the_sweep_callback_writes_the_report_then_exits_1_naming_each_diverged_job(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    for number in range(3):
        make_job(sweep, number, [f"seed={number}"], [0.5], [0.2])
    for number, step in ((1, 7), (2, 30)):
        (sweep / str(number) / "summary.json").write_text(json.dumps({"diverged_at_step": step}))
    with pytest.raises(SystemExit) as exited:
        SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert exited.value.code == 1 and "diverged at step 30" in (sweep / "report.md").read_text()
    assert capsys.readouterr() == (
        f"sweep report: {sweep / 'report.md'}\n",
        f"error: job(s) 1, 2 of the sweep diverged (see {sweep / 'report.md'})\n",
    )


def test_the_sweep_callback_writes_no_report_for_a_sweep_of_fast_dev_runs(tmp_path: Path, capsys) -> None:
    make_job(tmp_path / "sweep", 0, ["norm=lrn"], [0.5], [0.2])  # (such a job logs nothing: nothing to report)
    config = {"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}, "trainer": {"fast_dev_run": 1}}
    SweepReport().on_multirun_end(OmegaConf.create(config))
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["0"] and capsys.readouterr().out == ""


def test_the_sweep_callback_says_why_there_is_no_report_when_no_job_kept_its_overrides(tmp_path: Path, capsys) -> None:
    make_job(tmp_path / "sweep", 0, ["norm=lrn"], [0.5], [0.2])
    shutil.rmtree(tmp_path / "sweep" / "0" / ".hydra")  # what hydra.output_subdir=null leaves
    SweepReport().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}}))
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["0"]
    assert capsys.readouterr() == (
        "",
        f"no sweep report: no job in {tmp_path / 'sweep'} kept its .hydra/overrides.yaml "
        "(hydra.output_subdir=null leaves it out)\n",
    )


def test_figure1s_ratio_is_the_epochs_of_the_fastest_tanh_job_over_those_of_the_fastest_relu_job(
    tmp_path: Path,
) -> None:
    sweep = tmp_path / "sweep"
    # ReLU: below 25% after 2 epochs (the faster of its two jobs); tanh: after 5 -> 5 / 2 = 2.5
    make_job(sweep, 0, ["activation=relu", "model.lr=0.01"], [0.5] * 3, [0.2] * 3, [0.5, 0.3, 0.2])
    make_job(sweep, 1, ["activation=relu", "model.lr=0.02"], [0.5] * 3, [0.2] * 3, [0.4, 0.2, 0.1])
    make_job(sweep, 2, ["activation=tanh", "model.lr=0.02"], [0.5] * 5, [0.2] * 5, [0.7, 0.5, 0.4, 0.3, 0.24])
    lines = write_report(sweep)[0].read_text().splitlines()
    assert lines[-1] == "tanh / ReLU: 2.5 (the paper: about 6)"


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (["model.net.columns=2", "model.net.columns=1"], "columns=1 vs 2 is not the paper's two-GPU ablation (gpus)"),
        (["norm=lrn", "norm=none model.lr=0.02"], "the two differ in the learning rate too"),
        (["norm=none", "norm=lrn"], "the paper's choice is norm=lrn: none minus lrn is not its effect"),
    ],
)
def test_only_the_papers_ablations_get_an_ablation_row(tmp_path: Path, overrides: list[str], why: str) -> None:
    sweep = tmp_path / "sweep"
    for number, choice in enumerate(overrides):
        make_job(sweep, number, choice.split(), [0.5], [0.2])
    markdown = write_report(sweep)[0].read_text()
    if why.startswith("the paper's choice"):
        (row,) = table(markdown, "## The paper's ablations")
        assert row[1:3] == ["norm=lrn", "norm=none"], why  # one row, the paper's choice first
    else:
        assert "## The paper's ablations" not in markdown, why


def test_an_ablations_std_combines_both_sides_spreads(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for number, (norm, seed, top1) in enumerate(
        [("lrn", 0, 0.40), ("lrn", 1, 0.44), ("none", 0, 0.50), ("none", 1, 0.52), ("none", 2, 0.54)]
    ):
        make_job(sweep, number, [f"norm={norm}", f"seed={seed}"], [top1], [top1 / 2])
    (row,) = table(write_report(sweep)[0].read_text(), "## The paper's ablations")
    # lrn: 40, 44 -> 42 ± sqrt(8); none: 50, 52, 54 -> 52 ± 2; sqrt(8 / 2 + 4 / 3) = 2.31
    assert row[3] == "2 vs 3" and row[4] == f"-10.00 ± {math.sqrt(8 / 2 + 4 / 3):.2f}"


def test_fig1_png_draws_each_neurons_fastest_job_and_the_25_percent_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Figure 1: training error per epoch of the fastest ReLU job (solid) and tanh job (dashed), over epochs
    counted from 1, and the 25% line."""
    sweep = tmp_path / "sweep"
    make_job(sweep, 0, ["activation=relu", "model.lr=0.01"], [0.5] * 3, [0.2] * 3, [0.5, 0.3, 0.26])
    make_job(sweep, 1, ["activation=relu", "model.lr=0.02"], [0.5] * 3, [0.2] * 3, [0.4, 0.2, 0.1])  # faster
    make_job(sweep, 2, ["activation=tanh", "model.lr=0.02"], [0.5] * 3, [0.2] * 3, [0.7, 0.5, 0.24])
    fig = drawn(monkeypatch, sweep)["fig1.png"]
    drawn_lines = curves(fig)
    assert [points for label, points in drawn_lines.items() if label.startswith("_")] == [[(0, 0.25), (1, 0.25)]]
    # (an unlabelled horizontal line across the axes, x in axes fractions, at 25%)
    relu, tanh = "ReLU (activation=relu model.lr=0.02)", "tanh (activation=tanh model.lr=0.02)"
    assert {label: points for label, points in drawn_lines.items() if not label.startswith("_")} == {
        relu: [(1, 0.4), (2, 0.2), (3, 0.1)],
        tanh: [(1, 0.7), (2, 0.5), (3, 0.24)],
    }
    styles = {line.get_label(): (line.get_linestyle(), to_rgb(line.get_color())) for line in fig.axes[0].lines}
    assert (styles[relu], styles[tanh]) == (("-", (0, 0, 0)), ("--", (0, 0, 0)))  # black, as the paper's
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_ylim()) == ("epochs", "training error rate", (0, 1))
