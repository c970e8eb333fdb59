"""The trainer section's keys; conf/trainer/default.yaml documents and sets each one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from ddpm.config.errors import ConfigError
from ddpm.config.schema import (
    Decay,
    Length,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
)

MAX_SIGMA_REL = 0.2886  # sqrt(1/12), the sigma_rel of the exponent-0 power EMA


@dataclass(frozen=True)
class TrainerConfig:
    steps: PositiveInt
    epochs: Annotated[int | None, Range(gt=0)]  # if set, steps = epochs * steps per epoch
    minutes: Annotated[float | None, Range(gt=0)]  # if set, steps = what fits (budget.py)
    batch_size: PositiveInt  # the effective batch of one optimiser step
    accumulate: PositiveInt  # micro-batches per optimiser step, each batch_size / accumulate
    lr: PositiveFloat
    min_lr: NonNegativeFloat
    warmup_steps: NonNegativeInt
    adam_betas: Annotated[list[float], Range(ge=0, lt=1), Length(2)]
    grad_clip: NonNegativeFloat  # global-norm clipping; 0 disables
    ema_decay: Decay
    ema_warmup: bool
    # post-hoc EMA (ddpm.training.phema): the sigma_rel of each tracked power EMA ([]: off)
    posthoc_ema: Annotated[list[float], Range(gt=0, lt=MAX_SIGMA_REL)]
    posthoc_every: NonNegativeInt  # steps between snapshots; 0: only at the end
    posthoc_max_mb: PositiveFloat  # refuse a run whose snapshots would take more disk
    log_every: PositiveInt
    sample_every: NonNegativeInt  # 0: only at the end
    sample_n: PositiveInt
    checkpoint_every: NonNegativeInt  # 0: only at the end
    keep_checkpoints: PositiveInt
    eval_n: NonNegativeInt  # samples per evaluation; 0 disables the sample metrics
    bpd_n: NonNegativeInt  # test images for the bits/dim bound; 0 disables it
    bpd_timesteps: Annotated[int | None, Range(gt=0)]  # timesteps of T in the bound (null: all)
    eval_every: NonNegativeInt  # 0: evaluate only at the end
    resume: str | None  # latest | <run dir> | <checkpoint.ckpt>
    skip_nonfinite: bool  # skip (and count) NaN/inf steps instead of stopping

    def __post_init__(self) -> None:
        if self.batch_size % self.accumulate:
            raise ConfigError(
                f"trainer.batch_size={self.batch_size} must divide into "
                f"trainer.accumulate={self.accumulate} equal micro-batches"
            )
        if self.min_lr > self.lr:
            raise ConfigError(f"trainer.min_lr={self.min_lr} must be <= trainer.lr={self.lr}")

    def due(self, every: int, step: int) -> bool:
        """A periodic event (every > 0 steps) falls on `step`, before the last one."""
        return every > 0 and step % every == 0 and step < self.steps
