"""The fit loop: batches in, one compiled TrainStep each, a clock and the stop conditions.

Logging, sample grids, evaluation, checkpoints and the summary hang off it as callbacks
(ddpm.training.callbacks), called in their list's order at each hook.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from mindspore import Tensor
from mindspore import dtype as mstype
from tqdm import tqdm

from ddpm.config.errors import ConfigError, Interrupted, NonFiniteLoss
from ddpm.config.registry import Registry
from ddpm.data import ImageData, batch_stream
from ddpm.diffusion.conditioning import drop_labels
from ddpm.diffusion.formulations import Formulation
from ddpm.runtime.distributed import World
from ddpm.runtime.signals import StopSignals
from ddpm.training.callbacks import Callback, StepResult
from ddpm.training.config import TrainerConfig
from ddpm.training.lr_schedule import ema_decay
from ddpm.training.step import GradAccumulator, TrainStep

TRAINERS = Registry("trainer")


@dataclass(frozen=True)
class Batches:
    """What the loop feeds the step: the images, T, and the label dropout of a conditional
    model (num_classes 0: unconditional)."""

    data: ImageData
    num_timesteps: int
    num_classes: int = 0
    p_uncond: float = 0.0
    formulation: Formulation | None = None  # a continuous one draws levels instead of t

    def levels(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(the step's time input, each example's timestep for the loss quarters): DDPM's t,
        or a continuous formulation's rows of LEVEL_COLUMNS and its level's position."""
        f = self.formulation
        if f is None:
            t = rng.integers(0, self.num_timesteps, size=batch)
            return t.astype(np.int32), t
        s = f.sample_levels(rng, batch)
        return f.levels_table(s), (f.position(s) * self.num_timesteps).astype(np.int64)


@TRAINERS.register("default", schema=TrainerConfig)
class Trainer:
    """Drives one run; under data parallelism every worker runs it, rank 0 writes."""

    def __init__(
        self,
        cfg: TrainerConfig,
        train_step: TrainStep,
        batches: Batches,
        seed: int,
        world: World | None = None,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.cfg, self.train_step, self.batches, self.seed = cfg, train_step, batches, seed
        self.world = world or World()
        self.callbacks = list(callbacks)
        self.local_batch = self.world.local_batch(cfg.batch_size)
        if self.local_batch % train_step.accumulate:
            raise ConfigError(
                f"trainer.batch_size={cfg.batch_size} over {self.world.size} worker(s) gives "
                f"{self.local_batch} a worker, which trainer.accumulate="
                f"{train_step.accumulate} micro-batches must divide"
            )
        self.accumulator = GradAccumulator(train_step) if train_step.accumulate > 1 else None
        self.step = 0
        self.skipped = 0
        self.loop_start: float | None = None  # after this process's first (compiling) step
        self.loop_seconds = 0.0
        self.signals = StopSignals()

    def fit(self) -> dict[str, float]:
        """Train from self.step to cfg.steps; returns the final metrics, by name."""
        done = next((m for cb in self.callbacks if (m := cb.finished(self)) is not None), None)
        if done is not None:
            return done
        bar = tqdm(
            total=self.cfg.steps,
            initial=self.step,
            desc="train",
            dynamic_ncols=True,
            disable=not self.world.is_main,
        )
        try:
            for cb in self.callbacks:
                cb.on_fit_start(self)
            with self.signals.watch():
                stream = self.stream()
                while self.step < self.cfg.steps and self.signals.received is None:
                    result = self.train_one(next(stream))
                    self._clock()
                    bar.update(1)
                    for cb in self.callbacks:
                        cb.on_step_end(self, result, bar)
            bar.close()
            if self.signals.received is not None:
                path = next((p for cb in self.callbacks if (p := cb.on_interrupt(self))), None)
                raise Interrupted(self.signals.received, self.step, path)
            values: dict[str, float] = {}
            for cb in self.callbacks:
                values.update(cb.on_fit_end(self, values))
            return values
        finally:
            bar.close()
            for cb in self.callbacks:
                cb.teardown(self)

    def stream(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        shard = (self.world.rank, self.world.size)
        return batch_stream(self.batches.data, self.local_batch, self.seed, self.step, shard)

    def train_one(self, batch: tuple[np.ndarray, np.ndarray]) -> StepResult:
        """One step. t, eps and the label dropout of step n depend only on (seed, rank, n):
        workers differ, resume is exact."""
        x_start, labels = batch
        rng = np.random.default_rng((self.seed, self.world.rank, self.step))
        t_in, t = self.batches.levels(rng, len(x_start))
        noise = rng.standard_normal(x_start.shape, dtype=np.float32)
        if self.batches.num_classes:
            labels = drop_labels(labels, self.batches.p_uncond, self.batches.num_classes, rng)
        decay = ema_decay(self.step, self.cfg.ema_decay, self.cfg.ema_warmup)
        inputs = (x_start, t_in, noise, labels.astype(np.int32))
        losses, grad_norm = self._update(inputs, Tensor(decay, mstype.float32))
        result = StepResult(losses, t, float(grad_norm.asnumpy()))
        self.step += 1
        if not result.finite:
            self._non_finite(result)
        return result

    def _update(self, inputs: tuple[np.ndarray, ...], decay: Tensor) -> tuple[np.ndarray, Tensor]:
        """One optimiser step on the batch `inputs`, as trainer.accumulate micro-batches:
        the accumulator takes all but the last, the train step the last and updates."""
        if self.accumulator is None:
            losses, grad_norm = self.train_step(*map(Tensor, inputs), decay)
            return losses.asnumpy(), grad_norm
        micro = list(zip(*(np.split(a, self.train_step.accumulate) for a in inputs), strict=True))
        partial = [self.accumulator(*map(Tensor, m)).asnumpy() for m in micro[:-1]]
        losses, grad_norm = self.train_step(*map(Tensor, micro[-1]), decay)
        return np.concatenate([*partial, losses.asnumpy()]), grad_norm

    def _non_finite(self, result: StepResult) -> None:
        """Stop (the default) or count a skipped step; a bad step never reaches a checkpoint."""
        if self.cfg.skip_nonfinite:  # the compiled step already left the weights untouched
            self.skipped += 1
            return
        raise NonFiniteLoss(
            f"non-finite loss or gradient at step {self.step} (loss "
            f"{float(np.mean(result.losses)):.4g}, grad norm {result.grad_norm:.4g}). Likely "
            "causes: a learning rate too high for the model (trainer.lr), no gradient clipping "
            "(trainer.grad_clip=0), or p2/min-SNR weights that blow up at small SNR. The last "
            "good checkpoint is untouched; resume from it with a smaller trainer.lr, or set "
            "trainer.skip_nonfinite=true."
        )

    def _clock(self) -> None:
        """Time the loop from the end of its first step, which compiles the graph."""
        now = time.perf_counter()
        if self.loop_start is None:
            self.loop_start = now
        self.loop_seconds = now - self.loop_start
