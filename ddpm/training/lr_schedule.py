"""Learning-rate and EMA-decay schedules, as plain functions of the global step."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def cosine_lr(
    total_steps: int,
    lr: float,
    min_lr: float,
    warmup_steps: int = 0,
    length: int | None = None,
    replans: Sequence[tuple[int, int]] = (),
) -> np.ndarray:
    """[length or total_steps] float32: linear warm-up to lr, then cosine decay to min_lr at
    total_steps, and min_lr after it.

    `replans` are (step, new total) pairs in step order (a time budget's pacing): from each
    step on, the progress the decay has left is spread over the new total, so the rate stays
    continuous and still reaches min_lr at the end."""
    steps = np.arange(length or total_steps, dtype=np.float64)
    progress = np.clip((steps - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
    for step, total in replans:
        start = max(step, warmup_steps)
        done = progress[start] if start < len(steps) else 1.0
        later = steps >= start
        span = max(total - start, 1)
        progress[later] = np.clip(done + (1.0 - done) * (steps[later] - start) / span, 0.0, 1.0)
    values = min_lr + 0.5 * (lr - min_lr) * (1.0 + np.cos(math.pi * progress))
    if warmup_steps > 0:
        values = np.where(steps < warmup_steps, lr * (steps + 1) / warmup_steps, values)
    return values.astype(np.float32)


def ema_decay(step: int, decay: float, warmup: bool) -> float:
    """min(decay, (1 + n) / (10 + n)): lets the EMA follow the fast early changes."""
    return min(decay, (1.0 + step) / (10.0 + step)) if warmup else decay
