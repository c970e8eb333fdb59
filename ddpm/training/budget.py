"""Time budgets: `trainer.minutes=M` trains for M minutes of wall time.

The learning-rate schedule needs its horizon before the first step, so a first step count
is fixed up front: the run's own train step compiles and times a few real steps (data,
noise, the step itself), its state is then rewound, and the count is the budget times
that rate. It is recorded in budget.json and in the run's saved config. The run goes on
with the step the probe compiled.

That count misses what the loop does besides the step (logging, periodic grids and
evaluations, checkpoints) and any drift of the machine's speed during the run, so `Pacing`
re-fixes it as the run goes: about every 1% of the budget it measures the loop's recent
rate, everything included, and sets the total to what the rest of the budget fits. The
cosine decay is stretched or shrunk from that step on (lr_schedule.cosine_lr's `replans`),
within an LR table of `capacity` steps that the compiled step holds, sized from the budget
alone (MAX_STEPS_PER_S) so that it is fixed before the probe compiles the step. The
replans and the budget spent go into each checkpoint, so a resumed run rebuilds the same
schedule and spends only what is left. The budget covers the training loop after its first
(compiling) step; start-up and the final samples and evaluations come on top.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mindspore import Parameter
from omegaconf import DictConfig, OmegaConf

from ddpm.config.run_folder import RunFolder
from ddpm.runtime import atomic
from ddpm.training import checkpoint
from ddpm.training.callbacks import Callback, StepResult

if TYPE_CHECKING:
    from tqdm import tqdm

    from ddpm.training.loop import Trainer

log = logging.getLogger("ddpm")


@dataclass(frozen=True)
class Budget:
    minutes: float
    steps_per_s: float  # 1 / the median step time after compilation, on real batches
    timed_steps: int
    steps: int  # the first total: minutes * 60 * steps_per_s
    capacity: int = 0  # the LR table's length, the most steps pacing may give the run

    @property
    def seconds(self) -> float:
        return self.minutes * 60.0


# The rate is measured over at least this many steps (one slow step would dominate fewer);
# a loop that has not run this many gets no replan, except at its planned end.
MIN_WINDOW_STEPS = 10

# The LR table holds the budget's seconds at this rate: the most steps pacing may give a
# run (a 7-minute budget: 42,000 entries, 168 kB in each checkpoint).
MAX_STEPS_PER_S = 100.0


def capacity_for(minutes: float) -> int:
    """The LR table's length for a budget of `minutes`."""
    return max(1, math.ceil(minutes * 60.0 * MAX_STEPS_PER_S))


def steps_for(minutes: float, steps_per_s: float) -> int:
    return min(max(1, math.floor(minutes * 60.0 * steps_per_s)), capacity_for(minutes))


def fixed(minutes: float, steps_per_s: float, timed_steps: int) -> Budget:
    steps = steps_for(minutes, steps_per_s)
    return Budget(minutes, steps_per_s, timed_steps, steps, capacity_for(minutes))


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
    `warmup` steps (the first compiles). The step's training state (weights, optimiser, EMA)
    is set back afterwards, as a resume sets it, so the step, compiled, trains on as if it
    had not been timed.

    The rate is 1 / the median step time, which a burst of other load on the machine moves
    less than it moves the mean."""
    step = trainer.train_step
    state = {p.name: Parameter(p.asnumpy().copy(), name=p.name) for p in step.get_parameters()}
    try:
        stream = trainer.stream()
        for _ in range(warmup):
            trainer.train_one(next(stream))
        start, times = time.perf_counter(), []
        while len(times) < 3 or time.perf_counter() - start < seconds:
            begin = time.perf_counter()
            trainer.train_one(next(stream))
            times.append(time.perf_counter() - begin)
    finally:
        checkpoint.load_state(step, state)  # the LR table, which a step only reads, aside
    return 1.0 / float(np.median(times)), len(times)


@dataclass
class Pace:
    """Where the budget stands: loop seconds spent before this process (a resumed run's
    earlier share) and the (step, new total) replans so far."""

    spent_before: float = 0.0
    replans: list[tuple[int, int]] = field(default_factory=list)


class Pacing(Callback):
    """Holds a time budget: re-fixes the step count from the loop's measured rate.

    Once `window` seconds of loop time have passed, every `check` seconds, and whenever the
    loop is about to end, the rate over the last `window` seconds (at least
    MIN_WINDOW_STEPS steps) gives the steps that the rest of the budget fits; the total
    moves there and the LR table follows (`relearn`).
    The loop ends when the budget is spent."""

    def __init__(
        self, budget: Budget, relearn: Callable[[Sequence[tuple[int, int]]], None]
    ) -> None:
        self.budget, self.relearn, self.pace = budget, relearn, Pace()
        self.check = max(budget.seconds / 100.0, 0.1)
        self.window = budget.seconds / 10.0
        self.marks: list[tuple[float, int]] = []  # (loop seconds, step) at each check

    def spent(self, trainer: Trainer) -> float:
        return self.pace.spent_before + trainer.loop_seconds

    def state(self, trainer: Trainer) -> dict[str, Any]:
        return {"spent_s": self.spent(trainer), "replans": self.pace.replans}

    def restore(self, trainer: Trainer, state: dict[str, Any]) -> None:
        self.pace = Pace(float(state["spent_s"]), [tuple(r) for r in state["replans"]])
        if self.pace.replans:
            self._apply(trainer, self.pace.replans[-1][1])

    def on_fit_start(self, trainer: Trainer) -> None:
        self.marks = []

    def on_step_end(self, trainer: Trainer, result: StepResult, bar: tqdm) -> None:
        now, step = trainer.loop_seconds, trainer.step
        ending = step >= trainer.cfg.steps
        if (
            self.marks
            and not ending
            and (now < self.window or now - self.marks[-1][0] < self.check)
        ):
            return
        self.marks.append((now, step))
        rate, steps = self.rate()
        if steps < MIN_WINDOW_STEPS and not (ending and steps):
            return
        total = min(step + round(self.left(trainer) * rate), self.budget.capacity)
        if total != trainer.cfg.steps:
            self.pace.replans.append((step, total))
            self._apply(trainer, total)
            bar.total = total

    def left(self, trainer: Trainer) -> float:
        return max(self.budget.seconds - self.spent(trainer), 0.0)

    def rate(self) -> tuple[float, int]:
        """(steps per loop second, steps measured) since the last mark at least `window`
        seconds and MIN_WINDOW_STEPS steps back, or the first."""
        now, step = self.marks[-1]
        old_enough = (
            m
            for m in reversed(self.marks)
            if now - m[0] >= self.window and step - m[1] >= MIN_WINDOW_STEPS
        )
        then, before = next(old_enough, self.marks[0])
        return (step - before) / max(now - then, 1e-9), step - before

    def _apply(self, trainer: Trainer, total: int) -> None:
        trainer.cfg = replace(trainer.cfg, steps=total)
        self.relearn(self.pace.replans)

    def on_fit_end(self, trainer: Trainer, values: dict[str, float]) -> dict[str, float]:
        log.info(
            "budget: %d steps in %.1f s of loop (%.1f%% of the budget; %d replans)",
            trainer.step,
            self.spent(trainer),
            100.0 * self.spent(trainer) / self.budget.seconds,
            len(self.pace.replans),
        )
        return {}
