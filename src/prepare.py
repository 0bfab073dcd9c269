"""Prepare a dataset once, as the paper did (section 2): python src/prepare.py source=DIR out=DIR

Resumable: run it again after an interruption and it skips the finished shards."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from alexnet_lab import run  # noqa: E402
from alexnet_lab.config import isatty  # noqa: E402
from alexnet_lab.data.layouts import DataRootError, detect_layout  # noqa: E402
from alexnet_lab.data.prepared import prepare  # noqa: E402


@hydra.main(version_base="1.3", config_path="../conf", config_name="prepare")
def main(cfg: DictConfig) -> None:
    with run.user_errors():
        run.check_config(cfg)
        if not cfg.source:
            raise DataRootError("no source: set source=DIR or the IMAGENET_ROOT environment variable")
        detect_layout(Path(cfg.source), key="source")
        out = prepare(cfg.source, cfg.out, cfg.layout, cfg.shard_size, cfg.quality, cfg.workers,
                      progress=isatty(), chroma=cfg.chroma)  # fmt: skip
        print(f"prepared {cfg.source} into {out}: train with data=imagenet_prepared data.root={out}")


if __name__ == "__main__":
    run.cli(main)
