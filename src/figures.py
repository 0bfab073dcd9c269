"""Draw the paper's Figures 3 and 4 from a checkpoint: python src/figures.py ckpt_path=PATH [data=... data.root=DIR]

Writes fig3.png and fig4.png into the run dir and logs them to W&B (offline unless WANDB_MODE says otherwise).
The training images' features are computed on the GPU when there is one."""

from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet_lab import figures, launch, resume, settings
from alexnet_lab.cli import run
from alexnet_lab.errors import UserError, user_errors
from alexnet_lab.module import ClassifierModule


def draw(cfg: DictConfig) -> dict[str, Path]:
    settings.check_config(cfg, "figures")
    L.seed_everything(cfg.seed)
    ckpt_path = resume.resolve_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir)
    if ckpt_path is None:
        raise UserError("no checkpoint: pass ckpt_path=PATH (a .ckpt file written by src/train.py)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = ClassifierModule.load_from_checkpoint(ckpt_path, map_location=device, weights_only=True).eval()
    options = {"crop_size": int(model.net.input_size)} if "crop_size" in cfg.data else {}
    datamodule = instantiate(cfg.data, **options)
    datamodule.fit_to(model.net, model.num_classes)
    datamodule.prepare_data()
    datamodule.setup("fit")
    out = Path(cfg.paths.output_dir)
    paths = {"fig3": out / "fig3.png", "fig4": out / "fig4.png"}
    metrics = figures.draw_figure3(model.net, paths["fig3"])
    count = cfg.max_train_images if cfg.max_train_images is not None else 10**12
    figures.draw_figure4(model, datamodule, paths["fig4"], count, cfg.batch_size)
    loggers = []
    if (cfg.get("logger") or {}).get("wandb"):  # (~logger: none)
        name = f"figures:{Path(ckpt_path).parent.parent.name}"
        loggers.append(instantiate(cfg.logger.wandb, name=name, job_type="figures", save_dir=str(out)))
    figures.log_figures(loggers, paths, metrics, step=resume.checkpoint_facts(ckpt_path).global_step)
    for logger in loggers:
        logger.experiment.finish()
    for key, value in metrics.items():
        print(f"{key}: {value:.4f}")
    for path in paths.values():
        print(f"wrote {path}")
    return paths


@hydra.main(version_base="1.3", config_path="../conf", config_name="figures")
def main(cfg: DictConfig) -> None:
    with user_errors(), launch.job_scope(__file__):
        draw(cfg)


if __name__ == "__main__":
    run(main)
