"""Time budgets: `trainer.minutes=M` trains for M minutes of wall time.

The learning-rate schedule, its warm-up and the EMA need their horizon before the first
step, so the step count is fixed up front: a throwaway copy of the run compiles its train
step and times a few real steps (data, noise, the step itself), and the count is the
budget times that rate. It is recorded in budget.json and in the run's saved config, so a
resume or a re-run from that config trains the same number of steps without timing again.
The budget covers the training steps; start-up, compilation and the final samples and
evaluations come on top.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import DictConfig, OmegaConf

from ddpm.config.run_folder import RunFolder
from ddpm.runtime import atomic

if TYPE_CHECKING:
    from ddpm.training.loop import Trainer

log = logging.getLogger("ddpm")


@dataclass(frozen=True)
class Budget:
    minutes: float
    steps_per_s: float  # 1 / the median step time after compilation, on real batches
    timed_steps: int
    steps: int  # the run's total: minutes * 60 * steps_per_s


def steps_for(minutes: float, steps_per_s: float) -> int:
    return max(1, math.floor(minutes * 60.0 * steps_per_s))


def recorded(run_dir: Path) -> Budget | None:
    """The budget a run fixed earlier, if it did."""
    path = RunFolder(run_dir).budget
    return Budget(**json.loads(path.read_text())) if path.is_file() else None


def record(run_dir: Path, budget: Budget, cfg: DictConfig) -> None:
    """budget.json, and the saved config with the fixed step count (trainer.minutes null)."""
    atomic.write_text(RunFolder(run_dir).budget, json.dumps(asdict(budget), indent=2))
    saved = RunFolder(run_dir).config
    if saved.is_file():
        fixed = OmegaConf.load(saved)
        fixed.trainer.steps, fixed.trainer.minutes, fixed.trainer.epochs = budget.steps, None, None
        atomic.write_text(saved, OmegaConf.to_yaml(fixed))
    log.info(
        "budget: %.3g minutes at %.3g steps/s (timed over %d steps after compiling) = %d steps",
        budget.minutes,
        budget.steps_per_s,
        budget.timed_steps,
        budget.steps,
    )


def time_steps(trainer: Trainer, seconds: float, warmup: int = 2) -> tuple[float, int]:
    """(steps per second, steps timed) of `trainer`'s loop body on its real batches, after
    `warmup` steps (the first compiles). It trains that trainer's state.

    The rate is 1 / the median step time, which a burst of other load on the machine moves
    less than it moves the mean."""
    stream = trainer.stream()
    for _ in range(warmup):
        trainer.train_one(next(stream))
    start, times = time.perf_counter(), []
    while len(times) < 3 or time.perf_counter() - start < seconds:
        begin = time.perf_counter()
        trainer.train_one(next(stream))
        times.append(time.perf_counter() - begin)
    return 1.0 / float(np.median(times)), len(times)
