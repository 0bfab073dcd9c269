"""Draw the paper's Figures 3 and 4 from a checkpoint: python src/figures.py ckpt_path=PATH [data=... data.root=DIR]

Writes fig3.png and fig4.png into the run dir and logs them to W&B (offline unless WANDB_MODE says otherwise).
The training images' features are computed on the GPU when there is one."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from alexnet_lab import figures, launch, run  # noqa: E402
from alexnet_lab.errors import UserError  # noqa: E402
from alexnet_lab.module import ClassifierModule  # noqa: E402
from alexnet_lab.resume import checkpoint_facts  # noqa: E402

run.default_wandb_mode()


def draw(cfg: DictConfig) -> dict[str, Path]:
    run.check_config(cfg)
    L.seed_everything(cfg.seed)
    ckpt_path = run.resolve_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir)
    if ckpt_path is None:
        raise UserError("no checkpoint: pass ckpt_path=PATH (a .ckpt file written by src/train.py)")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = ClassifierModule.load_from_checkpoint(ckpt_path, map_location=device, weights_only=True).eval()
    options = {"crop_size": int(model.net.input_size)} if "crop_size" in cfg.data else {}
    datamodule = instantiate(cfg.data, **options)
    datamodule.prepare_data()
    datamodule.setup("fit")
    out = Path(cfg.paths.output_dir)
    paths = {"fig3": out / "fig3.png", "fig4": out / "fig4.png"}
    metrics = figures.draw_figure3(model.net, paths["fig3"])
    count = cfg.max_train_images if cfg.max_train_images is not None else 10**12
    figures.draw_figure4(model, datamodule, paths["fig4"], count, cfg.batch_size)
    loggers = []
    if cfg.logger.get("wandb"):
        name = f"figures:{Path(ckpt_path).parent.parent.name}"
        loggers.append(instantiate(cfg.logger.wandb, name=name, job_type="figures", save_dir=str(out)))
    figures.log_figures(loggers, paths, metrics, step=checkpoint_facts(ckpt_path).global_step)
    for logger in loggers:
        logger.experiment.finish()
    for key, value in metrics.items():
        print(f"{key}: {value:.4f}")
    for path in paths.values():
        print(f"wrote {path}")
    return paths


@hydra.main(version_base="1.3", config_path="../conf", config_name="figures")
def main(cfg: DictConfig) -> None:
    with run.user_errors(), launch.job_scope(__file__):
        draw(cfg)


if __name__ == "__main__":
    run.cli(main)
