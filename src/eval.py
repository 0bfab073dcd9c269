"""Evaluate a checkpoint, or an ensemble of them, on val with the centre crop and the paper's ten crops:
python src/eval.py ckpt_path=PATH [data=imagenet data.root=DIR]
python src/eval.py 'ckpt_path=[A.ckpt,B.ckpt,...]'   # section 6: the softmax averaged over the CNNs
python src/eval.py model=torchvision_alexnet model.weights=IMAGENET1K_V1 data=imagenet data.root=DIR
                                                       # a net with given weights: the check of your ImageNet"""

import json
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from alexnet_lab import launch, records, resume, settings
from alexnet_lab.cli import run
from alexnet_lab.errors import UserError, user_errors
from alexnet_lab.module import ClassifierModule, Ensemble


def evaluate(cfg: DictConfig) -> dict:
    settings.check_config(cfg, "eval")
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("model") is not None:  # a net with the weights it is given (model.weights)
        members, paths = [instantiate(cfg.model)], []
        results: dict = {"model": cfg.model.net._target_, "weights": cfg.model.weights}
    else:
        given = list(cfg.ckpt_path) if isinstance(cfg.ckpt_path, ListConfig) else [cfg.ckpt_path]
        paths = [resume.resolve_ckpt_path(str(path), cfg.paths.log_dir) or "" for path in given if path]
        if not paths or "" in paths:
            raise UserError("no checkpoint: pass ckpt_path=PATH (a .ckpt file written by src/train.py), a list, or "
                            "model=<name> model.weights=<weights>")  # fmt: skip
        members = [ClassifierModule.load_from_checkpoint(p, map_location="cpu", weights_only=True) for p in paths]
        results = {"ckpt_path": paths[0] if len(paths) == 1 else paths}
    model = Ensemble(members)  # one member: the same numbers as that net alone
    trainer = instantiate(cfg.trainer, logger=False)
    members_results: list[dict] = [{"ckpt_path": path} for path in paths]
    multi_crop = "crop_size" in cfg.data  # ImageNet-style data; CIFAR-10 and MNIST are judged whole
    for crops in cfg.test_crops if multi_crop else [1]:
        # the crops follow the checkpoints' net (224 or 227)
        options = {"test_crops": crops, "crop_size": model.input_size} if multi_crop else {}
        datamodule = instantiate(cfg.data, **options)
        datamodule.fit_to(members[0].net, model.num_classes)
        logged = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
        metrics = {k.removeprefix("val/"): float(v) for k, v in logged.items()}
        key = f"{crops}_crop"
        results[key] = {k: v for k, v in metrics.items() if not k.startswith("member")}
        if trainer.world_size == 1:  # each val image's top-1 class, in the dataset's order
            results[key]["predictions"] = torch.cat(model.predictions).tolist()
        for i, member in enumerate(members_results):
            member[key] = {k.removeprefix(f"member{i}/"): v for k, v in metrics.items() if k.startswith(f"member{i}/")}
        averaged = f"  ({len(paths)} CNNs averaged)" if len(paths) > 1 else ""
        errors = f"top-1 error {metrics['top1_err']:.4f}  top-5 error {metrics['top5_err']:.4f}"
        print(f"{crops:>2} crop(s): {errors}{averaged}")
    if len(paths) > 1:
        results["members"] = members_results
    published = getattr(members[0].net, "published_errors", None)
    if published and "1_crop" in results:  # the net's weights have published errors: is your data right?
        results["reference_check"] = records.reference_check(results["1_crop"], published)
        print(results["reference_check"])
    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir, "eval.json")
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {out}")
    return results


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    with user_errors(), launch.job_scope(__file__):  # each job of a sweep starts clean
        evaluate(cfg)


if __name__ == "__main__":
    run(main)
