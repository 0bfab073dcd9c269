"""Sweep -> report.md (one row per job) and report.png (val top-1 error per epoch, one line per job)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alexnet_lab.run import SUMMARY_FILE

METRICS_FILE = "csv/metrics.csv"


def job_dirs(sweep_dir: Path) -> list[Path]:
    jobs = [d for d in sweep_dir.iterdir() if (d / ".hydra" / "overrides.yaml").is_file()]
    return sorted(jobs, key=lambda d: (len(d.name), d.name))


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


def _images_per_sec(rows: list[dict[str, str]]) -> float:
    values = [float(r["train/images_per_sec"]) for r in rows if r.get("train/images_per_sec")]
    return sum(values) / len(values) if values else math.nan


def summarise(sweep_dir: str | Path) -> list[dict[str, Any]]:
    rows = []
    for job in job_dirs(Path(sweep_dir)):
        overrides = [str(o) for o in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
        summary = json.loads((job / SUMMARY_FILE).read_text()) if (job / SUMMARY_FILE).is_file() else {}
        rows_of_job = _metric_rows(job)
        curve = _val_curve(rows_of_job)
        best = min(curve, key=lambda r: r[1]) if curve else (None, math.nan, math.nan)
        rows.append({
            "job": job.name,
            "overrides": overrides,
            "params": summary.get("params"),
            "best_epoch": best[0],
            "val_top1_err": best[1],
            "val_top5_err": best[2],
            "images_per_sec": _images_per_sec(rows_of_job),
            "curve": curve,
        })  # fmt: skip
    return rows


def _differing(rows: list[dict[str, Any]]) -> list[str]:
    """Per job, the overrides that are not the same in every job of the sweep."""
    common = set.intersection(*(set(r["overrides"]) for r in rows)) if rows else set()
    return [" ".join(o for o in r["overrides"] if o not in common) or "(defaults)" for r in rows]


def write_report(sweep_dir: str | Path) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep_dir = Path(sweep_dir)
    rows = summarise(sweep_dir)
    labels = _differing(rows)
    lines = [
        f"# Sweep report: {sweep_dir.name}",
        "",
        "| job | choices | parameters | best val top-1 err | val top-5 err | epoch | images/s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row, label in zip(rows, labels, strict=True):
        params = f"{row['params']:,}" if row["params"] is not None else "-"
        lines.append(
            f"| {row['job']} | {label} | {params} | {row['val_top1_err']:.4f} | {row['val_top5_err']:.4f} "
            f"| {row['best_epoch'] if row['best_epoch'] is not None else '-'} | {row['images_per_sec']:.1f} |"
        )
    markdown = sweep_dir / "report.md"
    markdown.write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row, label in zip(rows, labels, strict=True):
        if row["curve"]:
            epochs, top1, _ = zip(*row["curve"], strict=True)
            ax.plot(epochs, top1, marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val top-1 error")
    ax.set_title(f"Sweep {sweep_dir.name}")
    ax.grid(alpha=0.3)
    if any(row["curve"] for row in rows):
        ax.legend()
    picture = sweep_dir / "report.png"
    fig.tight_layout()
    fig.savefig(picture, dpi=120)
    plt.close(fig)
    return markdown, picture


class SweepReport(Callback):
    """Hydra callback: writes report.md and report.png into the sweep dir when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        markdown, _ = write_report(config.hydra.sweep.dir)
        print(f"sweep report: {markdown}")
