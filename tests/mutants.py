"""Mutation check: plant one-line bugs ("mutants") and run the tests that should catch each.

    python tests/mutants.py            # every mutant
    python tests/mutants.py -k lrn     # the mutants whose name contains "lrn"
    python tests/mutants.py --list

Each mutant replaces one exact piece of text in one file (the text must occur there exactly once), runs only
the tests named for it (``pytest -n0 -x -q``), and puts the file back, whatever happens. A mutant is killed
when those tests fail, and survives when they pass: a survivor is a bug the suite would let through. The
score and the time it took are printed at the end; docs/testing.md records them. Not part of ``pytest`` (the
file name does not start with ``test_``): the whole check takes about 20 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = "src/alexnet_lab"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


def m(name: str, file: str, old: str, new: str, *tests: str) -> Mutant:
    return Mutant(name, file, old, new, tests)


MODEL = f"{PKG}/models/alexnet.py"
TM = "tests/test_model.py"
TD = "tests/test_data.py"
TMOD = "tests/test_module.py"
TC = "tests/test_config.py"
RESUME = "tests/test_faults.py::test_resume_after_interruptions_is_bitwise_equal"
RESUME_WORKERS = f"{RESUME}[1-process-2-workers-slurm-preempted]"
RESUME_PLAIN = f"{RESUME}[1-process-0-workers]"
# ClassifierModule's defaults are conf/recipe.yaml's numbers, which test_module.py checks against the paper
BASE_FILES = f"{TC}::test_each_base_file_states_every_argument_and_its_default"
SKIP_BAD = "tests/test_faults.py::test_a_batch_that_lost_every_image_is_passed_over_alone_and_with_ddp"
DIVERGED = f"{TMOD}::test_a_loss_that_is_not_finite_stops_the_fit_naming_its_step_and_validates_nothing_after_it"

MUTANTS = [
    # section 3: the net
    m("lrn k", MODEL, "LRN_BETA = 2.0, 5,", "LRN_BETA = 1.0, 5,", f"{TM}::test_lrn_equals_the_papers_formula"),
    m("lrn n", MODEL, "LRN_BETA = 2.0, 5,", "LRN_BETA = 2.0, 3,", f"{TM}::test_lrn_equals_the_papers_formula"),
    m("lrn alpha", MODEL, "= 2.0, 5, 1e-4, 0.75", "= 2.0, 5, 1e-3, 0.75", f"{TM}::test_lrn_equals_the_papers_formula"),
    m("lrn beta", MODEL, "= 2.0, 5, 1e-4, 0.75", "= 2.0, 5, 1e-4, 0.5", f"{TM}::test_lrn_equals_the_papers_formula"),
    m("lrn gradient factor", MODEL, "value=-2 * alpha * beta", "value=-alpha * beta", TM),
    m("lrn across the columns", MODEL, "a.view(b, self.columns, c // self.columns, h, w)", "a.view(b, 1, c, h, w)",
      f"{TM}::test_lrn_does_not_cross_the_columns"),
    m("caffe lrn alpha", MODEL, "cls(LRN_SIZE, LRN_ALPHA / LRN_SIZE,", "cls(LRN_SIZE, LRN_ALPHA,", TM),
    m("conv widths", MODEL, "PAPER_WIDTHS = (96, 256, 384, 384, 256)", "PAPER_WIDTHS = (96, 256, 384, 256, 256)", TM),
    m("one-gpu widths", MODEL, "ONE_GPU_WIDTHS = (48, 128, 192, 192, 256)", "ONE_GPU_WIDTHS = (48, 128, 192, 192, 128)",
      TM),
    m("fc width", MODEL, "FC_WIDTH = 4096", "FC_WIDTH = 2048", TM),
    m("dropout p", MODEL, "DROPOUT = 0.5", "DROPOUT = 0.4", TM),
    m("paper dropout at test time", MODEL, "        return x * (1.0 - self.p)\n", "        return x\n", TM),
    m("overlapping pool", MODEL, "(lambda: nn.MaxPool2d(3, stride=2))", "(lambda: nn.MaxPool2d(2, stride=2))", TM),
    m("conv1 pad side", MODEL, "nn.ZeroPad2d((0, 3, 0, 3))", "nn.ZeroPad2d((3, 0, 3, 0))", TM),
    m("conv2 sees both columns", MODEL, "kernel_size=5, padding=2, groups=columns)", "kernel_size=5, padding=2)", TM),
    m("paper init bias", MODEL, '1.0, ("conv2", "conv4",', '1.0, ("conv4",', TM),
    m("paper init std", MODEL, "BIASED_LAYERS = 0.01,", "BIASED_LAYERS = 0.02,", TM),
    m("lenet c5 width", f"{PKG}/models/lenet.py", 'nn.Conv2d(16, 120, 5)), ("act5"', 'nn.Conv2d(16, 100, 5)), ("act5"',
      "tests/test_figures.py::test_lenet5_has_the_papers_layers_and_61706_parameters"),
    # section 5: the recipe
    m("sgd velocity not carried across an lr drop", f"{PKG}/optim.py", "buffer.mul_(ratio)", "buffer.mul_(1.0)",
      f"{TMOD}::test_paper_sgd_equals_torch_sgd_at_a_constant_lr_but_not_across_a_drop"),
    m("sgd velocity rescaled the wrong way", f"{PKG}/optim.py", "ratio = held / lr", "ratio = lr / held",
      f"{TMOD}::test_paper_sgd_equals_torch_sgd_at_a_constant_lr_but_not_across_a_drop"),
    m("recipe lr", f"{PKG}/module.py", "lr: Annotated[float, Gt(0)] = 0.01,", "lr: Annotated[float, Gt(0)] = 0.02,",
      BASE_FILES),
    m("recipe momentum", f"{PKG}/module.py", "Interval(ge=0, lt=1)] = 0.9,", "Interval(ge=0, lt=1)] = 0.95,",
      BASE_FILES),
    m("recipe weight decay", f"{PKG}/module.py", "Ge(0)] = 0.0005,", "Ge(0)] = 0.005,", BASE_FILES),
    m("recipe plateau patience", f"{PKG}/module.py", "plateau_patience: Annotated[int, Ge(0)] = 5,",
      "plateau_patience: Annotated[int, Ge(0)] = 3,", TC),
    m("lighting std", f"{PKG}/data/transforms.py", "LIGHTING_STD = 0.1", "LIGHTING_STD = 0.2", TC),
    # metrics and the multi-crop test
    m("top-k error per batch, not per image", f"{PKG}/module.py", "self.total += labels.numel()",
      "self.total += 1", f"{TMOD}::test_top_k_error_on_a_hand_made_batch"),
    m("top-k wrong counts not summed over ranks", f"{PKG}/module.py",
      'self.add_state("wrong", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")',
      'self.add_state("wrong", torch.zeros((), dtype=torch.long), dist_reduce_fx=None)',
      "tests/test_train.py::test_eval_centre_and_ten_crops_with_one_and_two_processes_on_101_images"),
    m("top-k image counts not summed over ranks", f"{PKG}/module.py",
      'self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")',
      'self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx=None)',
      "tests/test_train.py::test_eval_centre_and_ten_crops_with_one_and_two_processes_on_101_images"),
    m("top-5 is top-4", f"{PKG}/module.py", "return 1, min(5, num_classes)", "return 1, min(4, num_classes)",
      f"{TMOD}::test_top_k_error_on_a_hand_made_batch"),
    m("multi-crop uses the first crop", f"{PKG}/module.py", "return probs.view(b, crops, -1).mean(dim=1)",
      "return probs.view(b, crops, -1)[:, 0]", f"{TMOD}::test_multi_crop_prediction_is_the_mean_softmax"),
    m("eval.py drops test_crops", "src/eval.py", '{"test_crops": crops, "crop_size"', '{"crop_size"',
      "tests/test_train.py::test_eval_centre_and_ten_crops_with_one_and_two_processes_on_101_images"),
    # section 4.1: crops, flips, ten crops, the mean image, PCA lighting
    m("crops on the diagonal", f"{PKG}/data/transforms.py", "((bits >> 20) & 0xFFFFF) % positions",
      "(bits & 0xFFFFF) % positions", f"{TD}::test_crops_and_flips"),
    m("last crop position never drawn", f"{PKG}/data/transforms.py", "positions = image_size - size + 1",
      "positions = image_size - size", f"{TD}::test_crops_and_flips"),
    m("never flipped", f"{PKG}/data/transforms.py", "bool((bits >> 40) & 1)", "False", f"{TD}::test_crops_and_flips"),
    m("ten-crop corner", f"{PKG}/data/transforms.py", "(far, 0), (far, far),", "(far, 0), (far, far - 1),",
      f"{TD}::test_crops_and_flips"),
    m("mean image not flipped", f"{PKG}/data/transforms.py", "cols.flip(1), cols)", "cols, cols)",
      f"{TD}::test_device_normalizer_equals_the_cpu_reference"),
    m("lighting in 0..1 units", f"{PKG}/data/transforms.py", "out = out + 255.0 * lighting_offset",
      "out = out + lighting_offset", f"{TD}::test_device_normalizer_equals_the_cpu_reference"),
    m("eigenvectors as rows", f"{PKG}/data/transforms.py", "return (alpha * eigvals) @ eigvecs.T",
      "return (alpha * eigvals) @ eigvecs", f"{TD}::test_pca_lighting_offsets_have_the_implied_covariance"),
    m("mean image off by one", f"{PKG}/data/stats.py", "(self.image_sum / self.images)",
      "(self.image_sum / (self.images + 1))", f"{TD}::test_statistics_are_the_mean_image_and_rgb_covariance"),
    # samplers: the training order, shards, resume
    m("same order every epoch", f"{PKG}/data/sampling.py", "manual_seed(mix(self.seed, self.epoch)))",
      "manual_seed(mix(self.seed)))", f"{TD}::test_training_order_shards_the_epoch_and_changes_between_epochs"),
    m("resume skip per rank", f"{PKG}/data/sampling.py", "range(self.rank + start * w,", "range(self.rank + start,",
      f"{TD}::test_resume_skips_exactly_the_trained_samples_with_the_same_augmentation_seeds"),
    m("val shard drops the last image", f"{PKG}/data/base.py", "range(rank, len(dataset), world_size))",
      "range(rank, len(dataset) - 1, world_size))", f"{TD}::test_val_shards_count_every_image_once"),
    m("step seed ignores the step", f"{PKG}/data/sampling.py", "s = mix(seed, step, rank)", "s = mix(seed, rank)",
      f"{TD}::test_step_seeds_fix_the_global_rngs_per_step_and_rank"),
    m("step seed leaves torch's generator", f"{PKG}/data/sampling.py", "    torch.default_generator.manual_seed(s)\n",
      "", f"{TD}::test_step_seeds_fix_the_global_rngs_per_step_and_rank"),
    m("crops never mirrored on the device", f"{PKG}/data/transforms.py",
      "columns = torch.where(flipped[:, None].bool(),",
      "columns = torch.where(flipped[:, None].bool() & False,",
      f"{TD}::test_device_normalizer_equals_the_cpu_reference"),
    m("resume skips batches as samples", f"{PKG}/data/sampling.py", 'state["batches"] * self.batch_size)',
      'state["batches"])', RESUME_PLAIN),
    m("iterator created before set_epoch", f"{PKG}/data/sampling.py", "yield from super().__iter__()",
      "return super().__iter__()", RESUME_WORKERS),
    m("step checkpoint at an epoch's last step", f"{PKG}/resume.py",
      "if due and not compat.at_last_batch(trainer) and", "if due and", RESUME_PLAIN),
    m("resume position one batch late", f"{PKG}/data/base.py", "compat.batches_done(self.trainer)\n",
      "compat.batches_done(self.trainer) + 1\n", RESUME_PLAIN),
    # checkpoints
    m("checkpoint written in place", f"{PKG}/files.py", "    tmp = _temp_name(path)\n", "    tmp = path\n",
      "tests/test_faults.py::test_kill_during_a_save_keeps_the_previous_checkpoint"),
    # files several processes write at once
    m("a live writer's temp file removed", f"{PKG}/files.py", "            os.kill(int(pid), 0)\n",
      "            raise ProcessLookupError\n",
      "tests/test_files.py::test_two_writers_of_one_file_keep_each_others_temp_file"),
    m("made once without the lock", f"{PKG}/files.py", '    with FileLock(path.with_name(f".{path.name}.lock")):\n',
      "    if True:\n", "tests/test_files.py::test_a_file_made_once_by_processes_that_start_together"),
    m("a SLURM task claims a dir of its own", f"{PKG}/config.py",
      "_claim_for_task(path, task) if task else _claim(path)", "_claim(path)",
      "tests/test_files.py::test_the_ranks_and_the_requeued_runs_of_a_slurm_job_share_one_run_dir"),
    m("srun ranks resolve ckpt_path alone", f"{PKG}/resume.py", "            resolved = _wait_for_rank0(choice)\n",
      "            resolved = resolve_ckpt_path(ckpt_path, outputs_root)\n",
      "tests/test_files.py::test_the_ranks_of_an_srun_job_resume_from_the_checkpoint_rank_0_chose"),
    m("scancel requeues", f"{PKG}/resume.py", "if self.first in self.requeue_signals and",
      "if self.first is not None and", "tests/test_slurm.py::test_scancel_saves_and_the_job_stays_cancelled"),
    m("trainer without atomic checkpoints", f"{PKG}/resume.py", "plugins: list[Any] = [AtomicCheckpointIO()]",
      "plugins: list[Any] = []",
      "tests/test_faults.py::test_the_configured_trainer_saves_every_checkpoint_through_a_temp_file"),
    # the report
    m("best epoch is the worst", f"{PKG}/report.py", "(min(curve, key=lambda r: r[1]), curve[-1])",
      "(max(curve, key=lambda r: r[1]), curve[-1])", "tests/test_report.py"),
    m("ablation sign", f"{PKG}/report.py", "effect[metric] = (ma - mb, math.sqrt",
      "effect[metric] = (mb - ma, math.sqrt", "tests/test_report.py"),
    # config resolvers and the launcher
    m("one gpu, two columns", f"{PKG}/config.py", 'return 1 if check_value("gpus", gpus, Gpus) == 1 else 2',
      "return 2", TC),
    m("devices ignore gpus", f"{PKG}/config.py", 'return check_value("gpus", gpus, Gpus) or 1', "return 1", TC),
    m("run dirs shared", f"{PKG}/config.py", "            os.mkdir(candidate)\n",
      "            os.makedirs(candidate, exist_ok=True)\n",
      "tests/test_train.py::test_run_dirs_started_in_the_same_second_are_distinct"),
    m("a job's environment leaks into the next", f"{PKG}/launch.py", "        os.environ.clear()\n", "        pass\n",
      "tests/test_train.py::test_a_sweep_of_ddp_jobs_runs_each_job_cleanly"),
    m("ranks resolve ckpt_path=last alone", f"{PKG}/resume.py",
      'if int(os.environ.get("LOCAL_RANK") or 0) > 0 and RANK0_CKPT_ENV in os.environ:', "if False:",
      "tests/test_train.py::test_a_sweep_resumed_with_ckpt_path_last[2]"),
    m("a resumed sweep's new job refused", f"{PKG}/resume.py", "if not candidates and hydra.mode == RunMode.MULTIRUN:",
      "if False:", "tests/test_train.py::test_a_sweep_resumed_with_ckpt_path_last[None]"),
    # a user's mistakes: one error line, before anything is read or written
    m("mistake: a negative seed", f"{PKG}/declare.py", "Seed = Annotated[int, Ge(0), ", "Seed = Annotated[int, ",
      "tests/test_schema.py::test_a_value_out_of_range"),
    m("mistake: a folder as the checkpoint", f"{PKG}/resume.py", "        if Path(ckpt_path).is_dir():\n",
      "        if False:\n", "tests/test_schema.py::test_a_folder_given_as_checkpoint"),
    m("mistake: a report of no jobs", f"{PKG}/report.py", "    if not job_dirs(sweep_dir):\n", "    if False:\n",
      "tests/test_report.py"),
    m("mistake: plateau without validation", f"{PKG}/settings.py", "    if every != 1 or limit == 0:\n",
      "    if False:\n", "tests/test_schema.py::test_the_plateau_schedule_without_validation_every_epoch"),
    m("mistake: lightning's refusal as a traceback", f"{PKG}/errors.py", "            return refused\n",
      "            pass\n", "tests/test_schema.py::test_settings_lightning_refuses"),
    m("mistake: the data root's key", f"{PKG}/data/layouts.py",
      'raise UserError(f"{key}={root} does not exist: set {key}=DIR',
      'raise UserError(f"data.root={root} does not exist: set data.root=DIR',
      "tests/test_prepared.py::test_prepare_script_and_a_missing_source"),
    m("mistake: sweep jobs checked as they come", f"{PKG}/sweeps.py",
      '        if config.hydra.sweeper.get("_target_") != compat.BASIC_SWEEPER:\n', "        if True:\n",
      "tests/test_schema.py::test_a_mistake_in_a_later_job_of_a_sweep_stops_it_before_the_first"),
    # the four one-line bugs no curated mutant had (found by hand before tests/test_*.py caught them)
    m("mirrored a quarter of the time", f"{PKG}/data/transforms.py", "bool((bits >> 40) & 1)",
      "bool((bits >> 40) & 3 == 3)", f"{TD}::test_training_crops_are_uniform_and_mirrored_half_the_time"),
    m("paper dropout times p at test time", MODEL, "        return x * (1.0 - self.p)\n", "        return x * self.p\n",
      f"{TM}::test_paper_dropout_keeps_1_minus_p_and_scales_by_it_at_test_time"),
    m("bias decay multiplier ignored", f"{PKG}/optim.py", '"weight_decay": weight_decay * bias_decay_mult',
      '"weight_decay": weight_decay', f"{TMOD}::test_the_decay_and_lr_the_optimizer_applies_to_a_bias"),
    # a loss that is not finite
    m("a diverged fit validates the diverged weights", f"{PKG}/module.py",
      "self.trainer.should_stop, self.trainer.limit_val_batches = True, 0", "self.trainer.should_stop = True",
      DIVERGED),
    m("divergence looked for at logging steps only", f"{PKG}/module.py",
      "if (due or compat.validates_after_this_step(trainer)) and", "if due and", DIVERGED),
    m("a diverged search trial scores nan", "src/train.py", "return math.inf", "return math.nan",
      "tests/test_habits.py::test_an_optuna_trial_that_diverges_scores_inf_and_the_search_goes_on"),
    m("an ensemble's error is its first member's", f"{PKG}/module.py", "self.val_metrics.update(ensemble, labels)",
      "self.val_metrics.update(probs[0], labels)",
      f"{TMOD}::test_an_ensembles_validation_error_is_that_of_the_averaged_softmax"),
    # unreadable images skipped (data.skip_bad_images), alone and with DDP
    m("the statistics read every file", f"{PKG}/data/imagenet.py", "skip_bad=self.skip_bad_images", "skip_bad=False",
      f"{SKIP_BAD}[1]"),
    m("an empty batch skips its step under DDP", f"{PKG}/module.py",
      "return None if self.trainer.world_size == 1 else zero_loss(self.net)", "return None", f"{SKIP_BAD}[2]"),
    m("the loss read only by ranks with steps to log", f"{PKG}/module.py",
      "and self.finite() and due and self.totals.interval_steps:",
      "and due and self.totals.interval_steps and self.finite():",
      f"{SKIP_BAD}[2]"),
    m("a rank with no image skips the epoch's sum", f"{PKG}/module.py", "        self.log_dict(self.totals.epoch(",
      "        if self.totals.steps: self.log_dict(self.totals.epoch(",
      "tests/test_faults.py::test_an_epoch_with_one_readable_image_gives_its_figures_alone_and_with_ddp[2]"),
    # a choice in a group that the net does not take
    m("a group the net does not take is accepted", f"{PKG}/settings.py", "and key not in taken:",
      "and key not in cfg.ablation:",
      "tests/test_schema.py::test_a_choice_in_an_ablation_group_that_the_net_does_not_take"),
    m("an input_size that nothing reads is accepted", f"{PKG}/settings.py",
      'key == "input_size" and key not in read_keys',
      'key == "input_size" and False and key not in read_keys',
      "tests/test_config.py::test_an_input_size_that_neither_the_net_nor_the_data_takes_is_refused"),
    m("a callback's key with no callback made of it is accepted", f"{PKG}/settings.py",
      'if callback is not None and "_target_" not in callback', 'if False and callback is not None',
      "tests/test_schema.py::test_a_callback_key_with_no_callback_made_of_it"),
    m("a group left out that the run reads gives a traceback", f"{PKG}/errors.py",
      "if (group := left_out(cause)) is not None:", "if False and (group := left_out(cause)) is not None:",
      "tests/test_habits.py::test_leaving_out_a_group_the_run_reads_is_one_line"),
    m("a job that validated no epoch reports nothing", f"{PKG}/report.py",
      "curve[-1]) if curve else (_after_training(summary),) * 2",
      "curve[-1]) if curve else ((None, math.nan, math.nan),) * 2",
      "tests/test_report.py::test_a_job_that_max_steps_ended_within_its_first_epoch_reports_its_validation_after_training",
      "tests/test_train.py::test_a_sweep_by_steps_reports_each_jobs_validation_after_training"),
    m("data of more classes than the net's are judged", f"{PKG}/data/base.py",
      "if classes is not None and self.num_classes > classes:",
      "if classes is not None and self.num_classes < classes:",
      "tests/test_data.py::test_data_of_more_classes_than_the_net_tells_apart_is_refused_and_of_as_many_or_fewer_taken",
      "tests/test_train.py::test_a_checkpoint_given_data_of_more_classes_than_it_tells_apart_stops_each_script_in_one_line"),
    m("a key counts as read where it is only set", f"{PKG}/records.py", 're.findall(r"\\$\\{([\\w.]+)\\}", OmegaConf',
      're.findall(r"(\\w+):", OmegaConf',
      "tests/test_config.py::test_an_input_size_that_neither_the_net_nor_the_data_takes_is_refused",
      "tests/test_config.py::test_a_choice_in_an_ablation_group_that_the_net_does_not_take_is_refused_and_left_out_of_its_records"),
    # figures
    m("nearest neighbours are the farthest", f"{PKG}/figures.py", "dim=1, largest=False)", "dim=1, largest=True)",
      "tests/test_figures.py::test_nearest_neighbours_are_exact_in_chunks_and_find_the_image_itself"),
    m("kernel colour ignores the channels", f"{PKG}/figures.py", "values - scaled.min(dim=1).values)",
      "values - scaled.max(dim=1).values)",
      "tests/test_figures.py::test_kernel_colour_separates_grey_kernels_from_coloured_ones"),
    m("the activation table's tanh is a relu", MODEL, '"tanh": nn.Tanh}', '"tanh": nn.ReLU}',
      f"{TM}::test_activation_everywhere_the_paper_has_relu"),
    m("lenet squashes with relus", f"{PKG}/models/lenet.py", "act = ACTIVATIONS[activation]",
      'act = ACTIVATIONS["relu"]',
      "tests/test_figures.py::test_lenet5_has_the_papers_layers_and_61706_parameters"),
    m("a generated sample is written in its root, not beside it", f"{PKG}/data/base.py",
      "atomic_dir(root, self.sample)  # type: ignore[arg-type]", "self.sample(root)  # type: ignore[misc]",
      f"{TD}::test_a_sample_whose_writing_is_interrupted_leaves_no_root_and_the_next_run_writes_it_whole"),
    m("kaiming gives a new activation tanh's gain", MODEL, '"tanh" if self.activation == "tanh" else "relu"',
      '"relu" if self.activation == "relu" else "tanh"', f"{TM}::test_kaiming_init"),
]  # fmt: skip


def run(mutant: Mutant, timeout: float) -> tuple[str, float, str]:
    path = REPO / mutant.file
    original = path.read_text()
    count = original.count(mutant.old)
    if count != 1:
        return "stale", 0.0, f"the text to replace occurs {count} times in {mutant.file}: update the mutant"
    start = time.monotonic()
    try:
        path.write_text(original.replace(mutant.old, mutant.new))
        command = [sys.executable, "-m", "pytest", "-n0", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests]
        try:
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "killed", time.monotonic() - start, f"timed out after {timeout:.0f} s"
    finally:
        path.write_text(original)
    lines = (result.stdout + result.stderr).strip().splitlines()
    status = "survived" if result.returncode == 0 else "killed"
    failed = next((line for line in lines if line.startswith("FAILED") or line.startswith("ERROR")), lines[-1])
    return status, time.monotonic() - start, failed if status == "killed" else lines[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default="", help="only the mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and their tests, run nothing")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant (a hang counts as killed)")
    args = parser.parse_args()
    chosen = [mutant for mutant in MUTANTS if args.k in mutant.name]
    if args.list:
        for mutant in chosen:
            print(f"{mutant.name}: {mutant.file} -> {' '.join(mutant.tests)}")
        return 0
    start, results = time.monotonic(), []
    for number, mutant in enumerate(chosen, 1):
        status, seconds, detail = run(mutant, args.timeout)
        results.append(status)
        print(f"[{number}/{len(chosen)}] {status:8s} {seconds:6.1f} s  {mutant.name}  ({detail})", flush=True)
    killed = results.count("killed")
    minutes = (time.monotonic() - start) / 60
    print(f"\nscore: {killed}/{len(results)} killed ({100 * killed / max(len(results), 1):.0f}%), "
          f"{results.count('survived')} survived, {results.count('stale')} stale, {minutes:.1f} minutes")  # fmt: skip
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
