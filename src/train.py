"""Train AlexNet: python src/train.py [group=choice ...] [key=value ...]   (-m for a sweep)"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
import lightning as L  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from alexnet_lab import launch, run  # noqa: E402
from alexnet_lab.module import count_parameters  # noqa: E402
from alexnet_lab.resume import checkpoint_facts  # noqa: E402

run.default_wandb_mode()


def train(cfg: DictConfig) -> dict[str, float]:
    run.check_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    ckpt_path = run.shared_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir, cfg.paths.output_dir)
    resumed = checkpoint_facts(ckpt_path) if ckpt_path else None
    loggers = [instantiate(cfg.logger.csv, resume_step=resumed.global_step if resumed else None)]
    if cfg.logger.get("wandb"):
        identity = run.wandb_identity(cfg)
        if resumed and resumed.wandb_run_id:
            identity.update(id=resumed.wandb_run_id, resume="allow")  # the same W&B run, offline too
        loggers.append(instantiate(cfg.logger.wandb, _partial_=True)(**identity))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    if trainer.is_global_zero:
        for logger in loggers[1:]:
            logger.experiment.define_metric("val/top1_err", summary="min")
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        last = run.last_epoch_errors(trainer)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        metrics = trainer.validate(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)[0]
        run.write_summary(trainer, cfg.paths.output_dir, params=count_parameters(model.net), best_ckpt=best,
                          crops=run.crop_protocol(cfg.data.get("test_crops")), last=last,
                          best=run.best_epoch_errors(best, metrics), **metrics)  # fmt: skip
    finally:
        for logger in loggers[1:]:
            logger.experiment.finish()  # each job of a sweep is its own W&B run
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with run.user_errors(), launch.job_scope(__file__):  # each job of a sweep starts clean
        return train(cfg)["val/top1_err"]


if __name__ == "__main__":
    run.cli(main)
