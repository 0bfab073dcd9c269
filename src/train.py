"""Train AlexNet: python src/train.py [group=choice ...] [key=value ...]   (-m for a sweep)"""

import logging
import math
import sys

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from alexnet_lab import launch, records, resume, settings
from alexnet_lab.cli import run
from alexnet_lab.cluster import process_rank
from alexnet_lab.errors import user_errors
from alexnet_lab.module import Diverged, count_parameters

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    settings.check_config(cfg, "train", HydraConfig.get().overrides.task)
    log.info("choices: %s", records.choices_line(cfg))
    L.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model)
    datamodule.fit_to(model.net, model.num_classes)
    # ~callbacks: none, and the settings that presets give them (a node without its _target_) go unused
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None and "_target_" in c]
    ckpt_path = resume.shared_ckpt_path(cfg.ckpt_path, cfg.paths.log_dir, cfg.paths.output_dir)
    resumed = resume.checkpoint_facts(ckpt_path) if ckpt_path else None
    loggers = resume.make_loggers(cfg.get("logger") or DictConfig({}), resumed, records.wandb_identity(cfg))  # ~logger
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    wandb_runs = [logger for logger in loggers if isinstance(logger, WandbLogger)]
    if trainer.is_global_zero:
        for logger in wandb_runs:
            logger.experiment.define_metric("val/top1_err", summary="min")
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if model.diverged_at is not None:  # a loss that was not finite: the run stopped, its checkpoints before it
            before = resume.last_checkpoint(cfg.paths.output_dir)
            records.write_summary(
                trainer,
                cfg.paths.output_dir,
                params=count_parameters(model.net),
                diverged_at_step=model.diverged_at,
                last_finite_ckpt=before,
                tags=list(cfg.tags),
            )
            raise Diverged(model.diverged_at, before)
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
            best=records.best_epoch_errors(resume.checkpoint_facts(best).epoch if best else None, metrics),
            tags=list(cfg.tags),
            **metrics,
        )
    finally:
        for logger in wandb_runs:
            logger.experiment.finish()  # each job of a sweep is its own W&B run
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    with user_errors(), launch.job_scope(__file__):  # each job of a sweep starts clean
        try:
            return train(cfg)["val/top1_err"]
        except Diverged as diverged:  # ends a run; in a sweep, the job (the others go on); rank 0 says so
            if HydraConfig.get().mode == RunMode.RUN and process_rank() == 0:
                raise
            if process_rank() == 0:
                print(f"error: {diverged}", file=sys.stderr)
            return math.inf  # worse than any result: an Optuna search goes on (it stops at a nan)


if __name__ == "__main__":
    run(main)
