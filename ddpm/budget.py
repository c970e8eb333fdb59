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
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ddpm import atomic
from ddpm.runs import RUN_CONFIG

log = logging.getLogger("ddpm")
BUDGET_FILE = "budget.json"


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
    path = run_dir / BUDGET_FILE
    return Budget(**json.loads(path.read_text())) if path.is_file() else None


def record(run_dir: Path, budget: Budget, cfg: DictConfig) -> None:
    """budget.json, and the saved config with the fixed step count (trainer.minutes null)."""
    atomic.write_text(run_dir / BUDGET_FILE, json.dumps(asdict(budget), indent=2))
    saved = run_dir / RUN_CONFIG
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
