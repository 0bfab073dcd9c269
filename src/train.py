"""Train AlexNet: python src/train.py [group=choice ...] [key=value ...]   (-m for a sweep)"""

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from alexnet_lab import config, launch, records, resume, settings
from alexnet_lab.errors import cli, user_errors
from alexnet_lab.module import count_parameters


def train(cfg: DictConfig) -> dict[str, float]:
    settings.check_config(cfg, "train")
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    datamodule.fit_to(model.net)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    ckpt_path = resume.shared_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir, cfg.paths.output_dir)
    resumed = resume.checkpoint_facts(ckpt_path) if ckpt_path else None
    loggers = [instantiate(cfg.logger.csv, resume_step=resumed.global_step if resumed else None)]
    if cfg.logger.get("wandb"):
        identity = records.wandb_identity(cfg)
        if resumed and resumed.wandb_run_id:
            identity.update(id=resumed.wandb_run_id, resume="allow")  # the same W&B run, offline too
        loggers.append(instantiate(cfg.logger.wandb, _partial_=True)(**identity))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    if trainer.is_global_zero:
        for logger in loggers[1:]:
            logger.experiment.define_metric("val/top1_err", summary="min")
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        last = records.last_epoch_errors(trainer)
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        metrics = trainer.validate(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)[0]
        records.write_summary(
            trainer,
            cfg.paths.output_dir,
            params=count_parameters(model.net),
            best_ckpt=best,
            last=last,
            crops=records.crop_protocol(cfg.data.get("test_crops")),
            best=records.best_epoch_errors(best, metrics),
            **metrics,
        )
    finally:
        for logger in loggers[1:]:
            logger.experiment.finish()  # each job of a sweep is its own W&B run
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    config.register()  # also where submitit starts a job
    with user_errors(), launch.job_scope(__file__):  # each job of a sweep starts clean
        return train(cfg)["val/top1_err"]


if __name__ == "__main__":
    config.register()
    cli(main)
