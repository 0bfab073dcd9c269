"""Prepare a dataset once, as the paper did (section 2): python src/prepare.py source=DIR out=DIR

Resumable: run it again after an interruption and it skips the finished shards."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from alexnet_lab import settings
from alexnet_lab.cli import run
from alexnet_lab.data.layouts import detect_layout
from alexnet_lab.data.prepared import prepare
from alexnet_lab.errors import UserError, user_errors


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    with user_errors():
        settings.check_config(cfg, "prepare")
        if not cfg.source:
            raise UserError("no source: set source=DIR or the IMAGENET_ROOT environment variable")
        detect_layout(Path(cfg.source), key="source")
        out = prepare(
            cfg.source,
            cfg.out,
            cfg.layout,
            cfg.shard_size,
            cfg.quality,
            cfg.workers,
            progress=sys.stderr.isatty(),
            chroma=cfg.chroma,
        )
        print(f"prepared {cfg.source} into {out}: train with data=imagenet_prepared data.root={out}")


if __name__ == "__main__":
    run(main)
