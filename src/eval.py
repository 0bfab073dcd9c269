"""Evaluate a checkpoint on val with the centre crop and the paper's ten crops:
python src/eval.py ckpt_path=PATH [data=imagenet data.root=DIR]"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from alexnet_lab import launch, run  # noqa: E402
from alexnet_lab.errors import UserError  # noqa: E402
from alexnet_lab.module import AlexNetModule  # noqa: E402


def evaluate(cfg: DictConfig) -> dict[str, dict[str, float]]:
    run.check_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    ckpt_path = run.resolve_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir)
    if ckpt_path is None:
        raise UserError("no checkpoint: pass ckpt_path=PATH (a .ckpt file written by src/train.py)")
    model = AlexNetModule.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    trainer = instantiate(cfg.trainer, logger=False)
    results = {}
    for crops in cfg.test_crops:
        datamodule = instantiate(cfg.data, test_crops=crops)
        metrics = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
        results[f"{crops}_crop"] = {k.removeprefix("val/"): float(v) for k, v in metrics.items()}
        print(f"{crops:>2} crop(s): top-1 error {metrics['val/top1_err']:.4f}  "
              f"top-5 error {metrics['val/top5_err']:.4f}")  # fmt: skip
    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir, "eval.json")
        out.write_text(json.dumps({"ckpt_path": ckpt_path, **results}, indent=2) + "\n")
        print(f"wrote {out}")
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with run.user_errors(), launch.job_scope(__file__):  # each job of a sweep starts clean
        evaluate(cfg)


if __name__ == "__main__":
    run.cli(main)
