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


@dataclass(frozen=True)
class TrainerConfig:
    steps: PositiveInt
    epochs: Annotated[int | None, Range(gt=0)]  # if set, steps = epochs * steps per epoch
    minutes: Annotated[float | None, Range(gt=0)]  # if set, steps = what fits (budget.py)
    batch_size: PositiveInt
    lr: PositiveFloat
    min_lr: NonNegativeFloat
    warmup_steps: NonNegativeInt
    adam_betas: Annotated[list[float], Range(ge=0, lt=1), Length(2)]
    grad_clip: NonNegativeFloat  # global-norm clipping; 0 disables
    ema_decay: Decay
    ema_warmup: bool
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
        if self.min_lr > self.lr:
            raise ConfigError(f"trainer.min_lr={self.min_lr} must be <= trainer.lr={self.lr}")

    def due(self, every: int, step: int) -> bool:
        """A periodic event (every > 0 steps) falls on `step`, before the last one."""
        return every > 0 and step % every == 0 and step < self.steps
