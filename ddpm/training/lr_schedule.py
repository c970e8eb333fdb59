"""Learning-rate and EMA-decay schedules, as plain functions of the global step."""

from __future__ import annotations

import math

import numpy as np


def cosine_lr(total_steps: int, lr: float, min_lr: float, warmup_steps: int = 0) -> np.ndarray:
    """[total_steps] float32: linear warm-up to lr, then cosine decay to min_lr."""
    steps = np.arange(total_steps, dtype=np.float64)
    decay_len = max(total_steps - warmup_steps, 1)
    progress = np.clip((steps - warmup_steps) / decay_len, 0.0, 1.0)
    values = min_lr + 0.5 * (lr - min_lr) * (1.0 + np.cos(math.pi * progress))
    if warmup_steps > 0:
        values = np.where(steps < warmup_steps, lr * (steps + 1) / warmup_steps, values)
    return values.astype(np.float32)


def ema_decay(step: int, decay: float, warmup: bool) -> float:
    """min(decay, (1 + n) / (10 + n)): lets the EMA follow the fast early changes."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay
