"""Sweep -> report.md and report.png (and fig1.png for a sweep over activation=relu,tanh): what each holds is in
the README ("Sweeps", and "The paper's figures" for Figure 1)."""

from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.errors import UserError
from alexnet_lab.files import atomic_write
from alexnet_lab.records import METRICS_FILE, SUMMARY_FILE, variant


@dataclass(frozen=True)
class Ablation:
    """A comparison the paper quantifies (``claim``): top-1 and top-5 error of ``paper`` minus ``other``, in points."""

    name: str
    key: str
    paper: tuple[str, ...]  # the override values of the paper's choice
    other: tuple[str, ...]
    claim: str


PAPER_ABLATIONS = [
    # Section 3.3: "Response normalization reduces our top-1 and top-5 error rates by 1.4% and 1.2%".
    Ablation("LRN (section 3.3)", "norm", ("lrn",), ("none",), "-1.4 / -1.2"),
    # Section 3.4: overlapping pooling "reduces the top-1 and top-5 error rates by 0.4% and 0.3%".
    Ablation("overlapping pooling (3.4)", "pooling", ("overlap",), ("nonoverlap",), "-0.4 / -0.3"),
    # Section 3.2: the two-GPU net "reduces our top-1 and top-5 error rates by 1.7% and 1.2%" against a net
    # with half as many kernels in each convolutional layer on one GPU.
    Ablation("two GPUs (3.2)", "gpus", ("2",), ("1",), "-1.7 / -1.2"),
    # Section 4.1: the PCA lighting "reduces the top-1 error rate by over 1%".
    Ablation("PCA lighting (4.1)", "data.lighting_std", ("0.1",), ("0", "0.0"), "top-1 < -1"),
]


def job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = [d for d in sweep_dir.iterdir() if (d / ".hydra" / "overrides.yaml").is_file()]
    return sorted(jobs, key=lambda d: (len(d.name), d.name))


def check_sweep_dir(path: str | Path) -> Path:
    """``path`` if it is the folder of a sweep (``-m``) with at least one job; else a :class:`UserError` that
    says what it is instead."""
    sweep_dir = Path(path)
    usage = "give the folder of a -m run, e.g. outputs/train/multiruns/<date_time>"
    if not sweep_dir.is_dir():
        raise UserError(f"{path} is not a folder: {usage}")
    if not job_dirs(sweep_dir):
        what = "one run's folder" if (sweep_dir / ".hydra" / "overrides.yaml").is_file() else "not a sweep's folder"
        raise UserError(f"{path} is {what} (no <job>/.hydra/overrides.yaml in it): {usage}")
    return sweep_dir


def _metric_rows(job: Path) -> list[dict[str, str]]:
    metrics = job / METRICS_FILE
    if not metrics.is_file():
        return []
    with open(metrics, newline="") as f:
        return list(csv.DictReader(f))


def _val_curve(rows: list[dict[str, str]]) -> list[tuple[int, float, float]]:
    """(epoch, val top-1 error, val top-5 error) per training epoch. The trainer.validate() after fit logs the
    best checkpoint's error under the epoch after the last one: it is not a point of the curve."""
    trained = {r["epoch"] for r in rows if r.get("train/loss_epoch")}
    return sorted(
        (int(r["epoch"]), float(r["val/top1_err"]), float(r["val/top5_err"]))
        for r in rows
        if r.get("val/top1_err") and r.get("epoch") in trained
    )


def _train_curve(rows: list[dict[str, str]]) -> list[tuple[int, float]]:
    """(epoch, training top-1 error over that epoch)."""
    return sorted((int(r["epoch"]), float(r["train/top1_err"])) for r in rows if r.get("train/top1_err"))


def epochs_to(curve: list[tuple[int, float]], target: float) -> int | None:
    """Figure 1's measure: the number of epochs after which the training error is first below ``target``."""
    return next((epoch + 1 for epoch, error in curve if error < target), None)


def _images_per_sec(rows: list[dict[str, str]]) -> float:
    values = [float(r["train/images_per_sec"]) for r in rows if r.get("train/images_per_sec")]
    return sum(values) / len(values) if values else math.nan


def _after_training(summary: dict[str, Any]) -> tuple[str | None, float, float]:
    """For a job that validated no epoch (``trainer.max_steps`` ended it within its first): the validation after
    its training that src/train.py recorded, as epoch "end"; nothing for one that recorded none."""
    errors = summary.get("best") or {}
    if errors.get("top1_err") is None:
        return None, math.nan, math.nan
    return "end", errors["top1_err"], errors.get("top5_err", math.nan)


def summarise(sweep_dir: str | Path) -> list[dict[str, Any]]:
    rows = []
    for job in job_dirs(Path(sweep_dir)):
        overrides = [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
        summary = json.loads((job / SUMMARY_FILE).read_text()) if (job / SUMMARY_FILE).is_file() else {}
        rows_of_job = _metric_rows(job)
        curve = _val_curve(rows_of_job)
        best, last = (min(curve, key=lambda r: r[1]), curve[-1]) if curve else (_after_training(summary),) * 2
        rows.append(
            {
                "job": job.name,
                "overrides": overrides,
                "variant": variant(overrides),
                "params": summary.get("params"),
                "tags": summary.get("tags") or [],
                "diverged_at_step": summary.get("diverged_at_step"),
                "crops": summary.get("crops", "centre crop"),
                "best_epoch": best[0],
                "val_top1_err": best[1],
                "val_top5_err": best[2],
                "last_top1_err": last[1],
                "last_top5_err": last[2],
                "images_per_sec": _images_per_sec(rows_of_job),
                "curve": curve,
                "train_curve": _train_curve(rows_of_job),
            }
        )
    return rows


def _differing(rows: list[dict[str, Any]]) -> list[str]:
    """Per job, the overrides that are not the same in every job of the sweep."""
    common = set.intersection(*(set(r["overrides"]) for r in rows))  # a sweep has a job at least
    return [" ".join(o for o in r["overrides"] if o not in common) or "(defaults)" for r in rows]


def variants(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Jobs grouped by their overrides but the seed, in the order they first appear."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["variant"], []).append(row)
    return groups


def finished(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The jobs that validated (an epoch, or after training) and did not diverge: the ones a mean over seeds counts."""
    return [r for r in jobs if r["best_epoch"] is not None and r["diverged_at_step"] is None]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (n - 1); the std is nan for a single value, both for none."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def _pm(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def ablation_effects(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each ablation the paper quantifies and two variants that differ in its key only: the difference of
    their mean best errors (paper's choice minus the other) in points, with the std of that difference
    (sqrt(s1^2 / n1 + s2^2 / n2): nan unless both have two seeds or more)."""
    groups = variants(rows)
    effects = []
    for ablation in PAPER_ABLATIONS:
        paper, other = ({f"{ablation.key}={v}" for v in values} for values in (ablation.paper, ablation.other))
        for (name_a, all_a), (name_b, all_b) in itertools.permutations(groups.items(), 2):
            a, b = set(name_a.split(",")), set(name_b.split(","))
            jobs_a, jobs_b = finished(all_a), finished(all_b)
            # one choice apart, in this ablation's key; and a job validated on each side, or nothing to compare
            if not (len(a - b) == len(b - a) == 1 and a - b <= paper and b - a <= other and jobs_a and jobs_b):
                continue
            effect = {"ablation": ablation, "paper": min(a - b), "other": min(b - a), "n": (len(jobs_a), len(jobs_b))}
            for metric in ("top1", "top5"):
                ma, sa = mean_std([100 * r[f"val_{metric}_err"] for r in jobs_a])
                mb, sb = mean_std([100 * r[f"val_{metric}_err"] for r in jobs_b])
                effect[metric] = (ma - mb, math.sqrt(sa**2 / len(jobs_a) + sb**2 / len(jobs_b)))
            effects.append(effect)
    return effects


def _over_seeds(groups: dict[str, list[dict[str, Any]]]) -> list[str]:
    """report.md's rows of variants run with several seeds: n and mean ± std of each error."""
    if not any(len(jobs) > 1 for jobs in groups.values()):
        return []
    lines = ["", "## Over seeds (mean ± std)", "",
             "| variant | n | best top-1 % | best top-5 % | last top-1 % | last top-5 % |",
             "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, jobs in groups.items():
        done = finished(jobs)
        keys = ("val_top1_err", "val_top5_err", "last_top1_err", "last_top5_err")
        cells = [_pm(*mean_std([100 * r[key] for r in done])) for key in keys]
        n = f"{len(done)}" if len(done) == len(jobs) else f"{len(done)} of {len(jobs)}"
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return lines


def _ablation_lines(effects: list[dict[str, Any]]) -> list[str]:
    """report.md's comparisons with the paper's numbers, when the sweep has them."""
    if not effects:
        return []
    lines = ["", "## The paper's ablations (best error, paper's choice minus the other, in points)", "",
             "| ablation | paper's choice | other | n | Δ top-1 | Δ top-5 | the paper |",
             "|---|---|---|---|---:|---:|---|"]  # fmt: skip
    for e in effects:
        lines.append(f"| {e['ablation'].name} | {e['paper']} | {e['other']} | {e['n'][0]} vs {e['n'][1]} | "
                     f"{_pm(*e['top1'])} | {_pm(*e['top5'])} | {e['ablation'].claim} |")  # fmt: skip
    return lines


def write_report(sweep_dir: str | Path) -> tuple[Path, Path]:
    sweep_dir = Path(sweep_dir)
    rows = summarise(sweep_dir)
    labels = _differing(rows)
    crops = sorted({row["crops"] for row in rows})  # each job's, "centre crop" where it did not say
    tags = sorted({tag for row in rows for tag in row["tags"]})
    lines = [
        f"# Sweep report: {sweep_dir.name}",
        "",
        *([f"Tags: {', '.join(tags)}", ""] if tags else []),
        f"Val error in %, {' / '.join(crops)}. *best*: the epoch with the lowest top-1 error, selected on the "
        "validation set itself (optimistic); *last*: the final epoch.",
        "",
        "| job | choices | parameters | best top-1 % | best top-5 % | best epoch | last top-1 % | last top-5 % "
        "| images/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, label in zip(rows, labels, strict=True):
        params = f"{row['params']:,}" if row["params"] is not None else "-"
        epoch = row["best_epoch"] if row["best_epoch"] is not None else "-"
        errors = [f"{100 * row[key]:.2f}" for key in ("val_top1_err", "val_top5_err", "last_top1_err", "last_top5_err")]
        if row["diverged_at_step"] is not None:  # not a result: the loss was not finite
            errors = [f"diverged at step {row['diverged_at_step']}"] * 4
        lines.append(f"| {row['job']} | {label} | {params} | {errors[0]} | {errors[1]} | {epoch} | {errors[2]} | "
                     f"{errors[3]} | {row['images_per_sec']:.1f} |")  # fmt: skip
    lines += _over_seeds(variants(rows)) + _ablation_lines(ablation_effects(rows))
    lines += figure1(sweep_dir, [{**row, "label": label} for row, label in zip(rows, labels, strict=True)])
    markdown = sweep_dir / "report.md"
    atomic_write(markdown, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    return markdown, _draw(sweep_dir, rows, labels)


FIG1_TARGET, FIG1_PAPER_RATIO = 0.25, 6  # Figure 1: 25% training error reached "six times faster" with ReLUs


def figure1(sweep_dir: Path, rows: list[dict[str, Any]]) -> list[str]:
    """For a sweep with activation=relu and activation=tanh jobs: each neuron's fastest job (its learning rate
    chosen, as the paper did, to train as fast as possible), the tanh / ReLU ratio of the epochs to 25% training
    error, and fig1.png (ReLU solid, tanh dashed, the 25% line). Nothing otherwise."""
    by_neuron: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for neuron in ("relu", "tanh"):
            if f"activation={neuron}" in row["overrides"] and row["train_curve"]:
                by_neuron.setdefault(neuron, []).append(row)
    if set(by_neuron) != {"relu", "tanh"}:
        return []
    fastest = {
        neuron: min(jobs, key=lambda r: (epochs_to(r["train_curve"], FIG1_TARGET) or math.inf, r["train_curve"][-1][1]))
        for neuron, jobs in by_neuron.items()
    }
    lines = [
        "",
        f"## Figure 1: epochs to {FIG1_TARGET:.0%} training error, ReLU vs tanh",
        "",
        "| neuron | fastest job | its choices | epochs to 25% | jobs tried |",
        "|---|---|---|---:|---:|",
    ]
    epochs = {}
    for neuron in ("relu", "tanh"):
        job = fastest[neuron]
        epochs[neuron] = epochs_to(job["train_curve"], FIG1_TARGET)
        shown = epochs[neuron] if epochs[neuron] is not None else f"not in {len(job['train_curve'])}"
        lines.append(f"| {neuron} | {job['job']} | {job['label']} | {shown} | {len(by_neuron[neuron])} |")
    if epochs["relu"] and epochs["tanh"]:
        ratio = f"{epochs['tanh'] / epochs['relu']:.1f}"
    else:
        ratio = "n/a (a neuron did not reach 25%)"
    lines += ["", f"tanh / ReLU: {ratio} (the paper: about {FIG1_PAPER_RATIO})"]
    _draw_figure1(sweep_dir / "fig1.png", fastest)
    return lines


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only (imported when a figure is drawn: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Writes ``fig`` to ``path`` as a PNG (atomic_write: whole or not at all) and closes it."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    pyplot().close(fig)
    return path


def _draw_figure1(path: Path, fastest: dict[str, dict[str, Any]]) -> None:
    fig, ax = pyplot().subplots(figsize=(5.5, 4))
    for neuron, style, name in (("relu", "-", "ReLU"), ("tanh", "--", "tanh")):
        curve, label = fastest[neuron]["train_curve"], f"{name} ({fastest[neuron]['label']})"
        ax.plot([e + 1 for e, _ in curve], [err for _, err in curve], style, color="black", label=label)
    ax.axhline(FIG1_TARGET, color="grey", linewidth=0.8)
    ax.set(xlabel="epochs", ylabel="training error rate", ylim=(0, 1))
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _draw(sweep_dir: Path, rows: list[dict[str, Any]], labels: list[str]) -> Path:
    import numpy as np  # (with matplotlib, which imports it anyway: not at start-up)
    from matplotlib.ticker import MaxNLocator

    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    groups = variants(rows)
    if any(len(jobs) > 1 for jobs in groups.values()):
        for name, jobs in groups.items():
            epochs = sorted({e for job in jobs for e, _, _ in job["curve"]})
            if not epochs:
                continue
            by_epoch = [[100 * t1 for job in jobs for e, t1, _ in job["curve"] if e == epoch] for epoch in epochs]
            mean, std = np.array([mean_std(errors) for errors in by_epoch]).T
            (line,) = ax.plot(epochs, mean, marker="o", label=f"{name} (n={len(jobs)})")
            std = np.nan_to_num(std)  # one job at that epoch: no band
            ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    else:
        for row, label in zip(rows, labels, strict=True):
            if row["curve"]:
                ax.plot([e for e, _, _ in row["curve"]], [100 * t for _, t, _ in row["curve"]], marker="o", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="val top-1 error (%)", title=f"Sweep {sweep_dir.name}")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, sweep_dir / "report.png")


class SweepReport(Callback):
    """Hydra callback: writes report.md and report.png into the sweep dir when a multirun ends (not for a sweep of
    Lightning's fast_dev_run, which logs nothing to report)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if (config.get("trainer") or {}).get("fast_dev_run"):
            return
        if not job_dirs(Path(config.hydra.sweep.dir)):  # what each job was comes from its .hydra/overrides.yaml
            print(f"no sweep report: no job in {config.hydra.sweep.dir} kept its .hydra/overrides.yaml "
                  "(hydra.output_subdir=null leaves it out)", file=sys.stderr)  # fmt: skip
            return
        markdown, _ = write_report(config.hydra.sweep.dir)
        print(f"sweep report: {markdown}")
        diverged = [row["job"] for row in summarise(config.hydra.sweep.dir) if row["diverged_at_step"] is not None]
        if diverged:  # the sweep ran to its end, and its status says that some of it did not converge
            print(f"error: job(s) {', '.join(diverged)} of the sweep diverged (see {markdown})", file=sys.stderr)
            sys.exit(1)
