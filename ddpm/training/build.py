"""The composition root: a resolved config (ddpm.config.groups.RunConfig) -> a run's objects.

Each builder takes the sections it needs and the values handed to it explicitly. Every
key has been checked by `resolve` before any of them runs, so a bad key costs no wait.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from mindspore import Tensor, nn
from omegaconf import OmegaConf

from ddpm.config.groups import GROUPS, HPARAM_KEYS, MODEL_GROUPS, RunConfig, section
from ddpm.config.registry import Option
from ddpm.config.run_folder import RunFolder
from ddpm.data import ImageData
from ddpm.data.build import build_data, dataset_classes
from ddpm.data.pipeline import steps_per_epoch
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.losses import loss_weights
from ddpm.evaluation.build import build_evaluator, build_likelihood, likelihood_variance
from ddpm.evaluation.metrics import computed_by
from ddpm.nn.build import denoiser
from ddpm.nn.unet import UNet
from ddpm.runtime.distributed import World
from ddpm.sampling.reverse_step import reverse_process
from ddpm.training import callbacks as cb
from ddpm.training.budget import Budget, Pacing
from ddpm.training.config import TrainerConfig
from ddpm.training.loop import Batches, Trainer
from ddpm.training.lr_schedule import cosine_lr
from ddpm.training.step import DenoisingLoss, HybridLoss, PreconditionedLoss, TrainStep


def build_loss(
    loss: Option, network: nn.Cell, diffusion: GaussianDiffusion
) -> DenoisingLoss | PreconditionedLoss:
    if diffusion.formulation is not None:
        return PreconditionedLoss(network, loss())
    weights = loss_weights(diffusion.snr, diffusion.objective, loss.shared)
    cell = DenoisingLoss if diffusion.variance is None else HybridLoss
    return cell(network, diffusion, loss(), weights)


def total_steps(trainer: TrainerConfig, num_images: int) -> int:
    """trainer.steps, or trainer.epochs converted with the dataset size and batch size."""
    if trainer.epochs:
        return trainer.epochs * steps_per_epoch(num_images, trainer.batch_size)
    return trainer.steps


def learning_rates(
    trainer: TrainerConfig,
    steps: int,
    length: int | None = None,
    replans: Sequence[tuple[int, int]] = (),
) -> np.ndarray:
    """The per-step LR table of trainer's lr, min_lr and warm-up over `steps`
    (lr_schedule.cosine_lr)."""
    return cosine_lr(steps, trainer.lr, trainer.min_lr, trainer.warmup_steps, length, replans)


def build_optimizer(
    trainer: TrainerConfig, network: nn.Cell, steps: int, length: int | None = None
) -> tuple[nn.Adam, np.ndarray]:
    lrs = learning_rates(trainer, steps, length)
    beta1, beta2 = trainer.adam_betas
    adam = nn.Adam(network.trainable_params(), learning_rate=Tensor(lrs), beta1=beta1, beta2=beta2)
    return adam, lrs


def build_train_step(
    trainer: TrainerConfig,
    loss: Option,
    network: nn.Cell,
    diffusion: GaussianDiffusion,
    steps: int,
    length: int | None = None,
) -> tuple[TrainStep, np.ndarray]:
    """The compiled step (loss, gradients, Adam, EMA) and its per-step learning rates, a
    table of `length` (default: steps) entries."""
    loss_fn = build_loss(loss, network, diffusion)  # first: it names the parameters network.*
    optimizer, lrs = build_optimizer(trainer, network, steps, length)
    step = TrainStep(
        loss_fn,
        optimizer,
        trainer.grad_clip,
        trainer.skip_nonfinite,
        trainer.accumulate,
        tuple(trainer.posthoc_ema),
    )
    return step, lrs


def model_fingerprint(run: RunConfig, classes: list[str] | None = None) -> dict[str, Any]:
    """The config keys that define the model; a checkpoint only loads into a match. A
    conditional model adds its conditioning and class names (which sampling needs)."""
    cfg = run.composed
    keys = {g: section(cfg, g) for g in MODEL_GROUPS}
    for group in ("formulation", "variance"):  # older runs predate these groups: omitted
        if run[group]() is not None:  # unless they change the model
            keys[group] = section(cfg, group)
    keys["dataset"] = {k: cfg.dataset[k] for k in ("channels", "image_size")}
    if classes is not None:
        keys["conditioning"], keys["classes"] = section(cfg, "conditioning"), list(classes)
    return keys


def hparams(run: RunConfig, steps: int, diffusion: GaussianDiffusion) -> dict[str, Any]:
    """The run's row in TensorBoard's HParams table: every group's option, HPARAM_KEYS,
    the step count and alpha_bar_T."""
    row: dict[str, Any] = {g: run[g].name for g in GROUPS if g != "trainer"}
    for key in HPARAM_KEYS:
        value = run.value(key)
        row[key.rpartition(".")[2]] = (
            str(value) if isinstance(value, list) else 0.0 if value is None else value
        )
    row["steps"] = steps
    row["alpha_bar_T"] = diffusion.terminal_alpha_bar()
    return row


@dataclass
class TrainingParts:
    """The objects of a training run that do not depend on its step count, built once."""

    run: RunConfig
    diffusion: GaussianDiffusion
    network: UNet
    ema_network: UNet
    classes: list[str] | None
    data: ImageData

    def batches(self) -> Batches:
        k = len(self.classes or [])
        p_uncond = self.run["conditioning"]().p_uncond if k else 0.0
        d = self.diffusion
        return Batches(self.data, d.num_timesteps, k, p_uncond, d.formulation)


def build_parts(run: RunConfig) -> TrainingParts:
    """The diffusion, the network and its EMA copy (initialised in this order from the
    seed), and the training data."""
    classes = dataset_classes(run["dataset"], run["conditioning"])
    diffusion, network = denoiser(run, classes)
    _, ema_network = denoiser(run, classes)
    data = build_data(run["dataset"], labels=classes is not None)
    return TrainingParts(run, diffusion, network, ema_network, classes, data)


def build_probe(
    parts: TrainingParts, world: World | None = None, length: int | None = None
) -> Trainer:
    """A trainer without callbacks on the run's network, for timing (budget.time_steps,
    which rewinds its step's state); build_trainer takes its step, LR table of `length`
    entries, and goes on with the graph the timing compiled."""
    run = parts.run
    steps = total_steps(run.trainer, len(parts.data.images))
    step, _ = build_train_step(
        run.trainer, run["loss"], parts.network, parts.diffusion, steps, length
    )
    return Trainer(run.trainer, step, parts.batches(), run.top.seed, world)


def build_pacing(
    cfg: TrainerConfig, budget: Budget, train_step: TrainStep, lrs: np.ndarray
) -> Pacing:
    """The callback that holds `budget`; it rewrites the LR table `lrs` (which Logging
    reads) and the step's copy of it in place."""

    def relearn(replans: Sequence[tuple[int, int]]) -> None:
        lrs[:] = learning_rates(cfg, budget.steps, len(lrs), replans)
        train_step.set_learning_rates(lrs)

    return Pacing(budget, relearn)


def build_trainer(
    parts: TrainingParts,
    run_dir: Path,
    world: World | None = None,
    budget: Budget | None = None,
    train_step: TrainStep | None = None,
) -> tuple[Trainer, cb.Checkpoints]:
    """The trainer of a run (for this worker of `world`) and its checkpoints; a `budget`
    (ddpm.training.budget) fixes the first step count and paces the run. `train_step`, the
    step of the probe that timed the budget (build_probe), is used instead of a new one."""
    run, diffusion, world = parts.run, parts.diffusion, world or World()
    steps = budget.steps if budget else total_steps(run.trainer, len(parts.data.images))
    cfg = dataclasses.replace(run.trainer, steps=steps)
    length = budget.capacity if budget and budget.capacity > steps else None
    if train_step is None:
        train_step, lrs = build_train_step(
            cfg, run["loss"], parts.network, diffusion, steps, length
        )
    else:
        lrs = learning_rates(cfg, steps, length)
        train_step.set_learning_rates(lrs)
    pacing = [build_pacing(cfg, budget, train_step, lrs)] if length else []
    sampler, dataset, k = run["sampler"], run["dataset"], len(parts.classes or [])
    reverse_step, plan = reverse_process(parts.ema_network, diffusion, sampler)
    sampling = cb.EmaSampling(
        train_step, parts.ema_network, reverse_step, plan, parts.data.shape, k
    )
    metrics, folder = computed_by(cfg, conditional=k > 0), RunFolder(run_dir)
    config_text = OmegaConf.to_yaml(run.composed, resolve=True)
    logging = cb.Logging(
        run_dir,
        diffusion,
        parts.data,
        lrs,
        hparams(run, steps, diffusion),
        metrics,
        config_text,
        asdict(budget) if budget else None,
    )
    likelihood = build_likelihood(
        cfg.bpd_n, cfg.bpd_timesteps, dataset, diffusion, likelihood_variance(sampler)
    )
    checkpoints = cb.Checkpoints(
        folder, logging, model_fingerprint(run, parts.classes), len(parts.data.images), pacing
    )
    callbacks = [
        *pacing,  # first: the others see the step count it sets
        logging,
        cb.SampleGrids(sampling, logging, folder, cfg.sample_n),
        *([cb.RankDigests(folder)] if world.size > 1 else []),
        cb.Evaluation(sampling, logging, build_evaluator(cfg.eval_n, dataset, k > 0), likelihood),
        cb.Summary(folder, logging, metrics, asdict(budget) if budget else None),
        *(
            [cb.PostHocEma(folder, cfg.posthoc_every, cfg.posthoc_max_mb)]
            if cfg.posthoc_ema
            else []
        ),
        checkpoints,
    ]
    trainer = run["trainer"].entry(cfg, train_step, parts.batches(), run.top.seed, world, callbacks)
    return trainer, checkpoints
