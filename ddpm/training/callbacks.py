"""What hangs off the fit loop (ddpm.training.loop), one concern a callback.

The loop calls each hook on every callback in list order: `finished` (a finished run
returns its metrics and trains nothing), `on_fit_start`, `on_step_end` after each step,
`on_fit_end` (each adds its final values, by metric name), `on_interrupt` (after a
signal), and `teardown` always. ddpm.training.build lists them so that a checkpoint
comes after everything logged at its step: a resumed run starts after that step and never
logs it again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from mindspore import Tensor, nn

from ddpm.config.errors import CheckpointError, ConfigError
from ddpm.config.run_folder import RunFolder
from ddpm.data import ImageData, batch_stream
from ddpm.data.images import make_grid, save_png, to_uint8
from ddpm.diffusion.conditioning import per_class_labels
from ddpm.diffusion.gaussian import GaussianDiffusion, q_sample
from ddpm.diffusion.samplers import SamplerPlan
from ddpm.evaluation.bpd import NegativeElbo
from ddpm.evaluation.evaluator import Evaluator
from ddpm.evaluation.metrics import Metric
from ddpm.runtime import atomic
from ddpm.sampling.reverse_step import ReverseStep, p_sample_loop
from ddpm.training import checkpoint, phema
from ddpm.training.logger import NullLogger, TensorBoardLogger
from ddpm.training.step import TrainStep, load_ema

if TYPE_CHECKING:
    from tqdm import tqdm

    from ddpm.training.loop import Trainer

log = logging.getLogger("ddpm")


@dataclass
class StepResult:
    losses: np.ndarray  # [B] per-example loss
    t: np.ndarray  # [B] timesteps
    grad_norm: float

    @property
    def finite(self) -> bool:
        return bool(np.all(np.isfinite(self.losses)) and np.isfinite(self.grad_norm))


class Callback:
    """The hooks, each a no-op by default."""

    def finished(self, trainer: Trainer) -> dict[str, float] | None:
        return None

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, result: StepResult, bar: tqdm) -> None: ...

    def on_fit_end(self, trainer: Trainer, values: dict[str, float]) -> dict[str, float]:
        return {}

    def on_interrupt(self, trainer: Trainer) -> Path | None:
        return None

    def teardown(self, trainer: Trainer) -> None: ...

    def state(self, trainer: Trainer) -> dict[str, Any]:
        """What a checkpoint keeps of this callback (see Checkpoints' `stateful`)."""
        return {}

    def restore(self, trainer: Trainer, state: dict[str, Any]) -> None:
        """Take back what state() returned, on resume."""


@dataclass
class _Window:
    """Running sums between two log points."""

    losses: list[np.ndarray] = field(default_factory=list)
    timesteps: list[np.ndarray] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)


class Logging(Callback):
    """Owns the run's TensorBoard logger (rank 0; the other workers get a NullLogger); logs
    the run's description at the start and the training curves every log_every steps."""

    def __init__(
        self,
        run_dir: Path,
        diffusion: GaussianDiffusion,
        data: ImageData,
        lrs: np.ndarray,
        hparams: dict[str, Any],
        metrics: list[Metric],
        config_text: str,
        budget: dict[str, Any] | None,
    ) -> None:
        self.run_dir, self.diffusion, self.data, self.lrs = run_dir, diffusion, data, lrs
        self.hparams, self.metrics, self.config_text, self.budget = (
            hparams,
            metrics,
            config_text,
            budget,
        )
        self.logger: TensorBoardLogger | NullLogger = NullLogger()
        self.window = _Window()
        self.last_loss = self.images_per_s = float("nan")

    def on_fit_start(self, trainer: Trainer) -> None:
        # On resume from step S, events after S go (the re-run writes them again); those at S,
        # such as its loss, were written before the checkpoint and stay.
        purge = trainer.step + 1 if trainer.step else None
        if trainer.world.is_main:
            self.logger = TensorBoardLogger(self.run_dir, purge_step=purge)
        self.logger.scalars(
            {"schedule/alpha_bar_T": self.diffusion.terminal_alpha_bar()}, trainer.step
        )
        self.logger.text("config", f"```\n{self.config_text}\n```", trainer.step)
        self.logger.hparams_start(self.hparams, [m.tag for m in self.metrics])
        if trainer.step == 0:
            self.logger.image("data/forward_process", self.forward_strip(trainer.seed), 0)
            if self.budget:
                self.logger.scalars({f"budget/{k}": v for k, v in self.budget.items()}, 0)
        self.window = _Window()

    def forward_strip(self, seed: int, columns: int = 8) -> np.ndarray:
        """One real image noised by q(x_t | x_0) at evenly spaced t, left (t=0) to right (T-1);
        for a continuous formulation, alpha x_0 + sigma eps over its sampler's range, divided
        by sqrt(alpha^2 + sigma^2) to stay in view."""
        d = self.diffusion
        x0, _ = next(batch_stream(self.data, 1, seed))  # [1, C, H, W]
        noise = np.random.default_rng(seed).standard_normal(x0.shape)
        if d.formulation is not None:
            alpha, sigma = d.formulation.path(d.formulation.display_levels(columns))
            norm = np.sqrt(alpha**2 + sigma**2)
            alpha, sigma = alpha / norm, sigma / norm
        else:
            ts = np.linspace(0, d.num_timesteps - 1, columns).round().astype(int)
            alpha, sigma = d.sqrt_alphas_cumprod[ts], d.sqrt_one_minus_alphas_cumprod[ts]
        strip = [q_sample(x0, noise, a, s) for a, s in zip(alpha, sigma, strict=True)]
        return make_grid(to_uint8(np.concatenate(strip)), nrow=columns)

    def on_step_end(self, trainer: Trainer, result: StepResult, bar: tqdm) -> None:
        if result.finite:
            self.window.losses.append(result.losses)
            self.window.timesteps.append(result.t)
            self.window.grad_norms.append(result.grad_norm)
        else:  # skipped (trainer.skip_nonfinite); the loop raises otherwise
            self.logger.scalars({"train/skipped_steps": trainer.skipped}, trainer.step)
        if trainer.step % trainer.cfg.log_every == 0 or trainer.step == trainer.cfg.steps:
            bar.set_postfix(self.log_window(trainer))
            self.window = _Window()

    def log_window(self, trainer: Trainer) -> dict[str, str]:
        if not self.window.losses:  # every step of the window was skipped as non-finite
            return {"skipped": str(trainer.skipped)}
        losses = np.concatenate(self.window.losses)
        ts = np.concatenate(self.window.timesteps)
        seconds = time.perf_counter() - self.window.start
        self.images_per_s = len(losses) * trainer.world.size / max(seconds, 1e-9)  # all workers
        self.last_loss = float(losses.mean())
        values = {
            "train/loss": self.last_loss,
            "train/lr": float(self.lrs[min(trainer.step, len(self.lrs)) - 1]),
            "train/grad_norm": float(np.mean(self.window.grad_norms)),
            "perf/images_per_s": self.images_per_s,
        }
        quarter = ts * 4 // self.diffusion.num_timesteps
        for q in range(4):  # improved-diffusion's loss_q0..q3 diagnostic
            if np.any(quarter == q):
                values[f"train/loss_q{q}"] = float(losses[quarter == q].mean())
        self.logger.scalars(values, trainer.step)
        return {"loss": f"{self.last_loss:.4f}", "img/s": f"{self.images_per_s:.1f}"}

    def on_fit_end(self, trainer: Trainer, values: dict[str, float]) -> dict[str, float]:
        return {"final_loss": self.last_loss, "images_per_s": self.images_per_s}

    def teardown(self, trainer: Trainer) -> None:
        self.logger.close()  # what was logged before a failure stays


@dataclass
class EmaSampling:
    """Sampling from the EMA weights of a TrainStep: its EMA copied into `ema_network`,
    which `reverse_step` wraps, and the sampler's plan."""

    train_step: TrainStep
    ema_network: nn.Cell
    reverse_step: ReverseStep
    plan: SamplerPlan
    shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int = 0

    def sync(self) -> ReverseStep:
        """Copy the current EMA weights into the network the reverse step samples with."""
        load_ema(self.ema_network, {p.name: p for p in self.train_step.ema})
        return self.reverse_step


class SampleGrids(Callback):
    """Every sample_every steps and at the end: sample_n EMA samples as a grid, logged and
    saved (a conditional model's grid has a row per class, of ceil(sample_n / K) each)."""

    def __init__(self, sampling: EmaSampling, logging: Logging, folder: RunFolder, n: int) -> None:
        self.sampling, self.logging, self.folder, self.n = sampling, logging, folder, n

    def grid(self, trainer: Trainer) -> np.ndarray:
        """Draw the grid (uint8 [H, W, C]), log it and save it under samples/."""
        step = self.sampling.sync()
        k, per_row, labels = self.sampling.num_classes, None, None
        if k:
            per_row = -(-self.n // k)
            labels = per_class_labels(per_row, k)
        shape = (len(labels) if k else self.n, *self.sampling.shape)
        x = p_sample_loop(step, self.sampling.plan, shape, seed=trainer.seed + 1, labels=labels)
        grid = make_grid(to_uint8(x), nrow=per_row)
        self.logging.logger.image("samples/ema", grid, trainer.step)
        if trainer.world.is_main:
            save_png(grid, self.folder.grid(trainer.step))
        return grid

    def on_step_end(self, trainer: Trainer, result: StepResult, bar: tqdm) -> None:
        if trainer.cfg.due(trainer.cfg.sample_every, trainer.step):
            self.grid(trainer)

    def on_fit_end(self, trainer: Trainer, values: dict[str, float]) -> dict[str, float]:
        grid = self.grid(trainer)
        if trainer.world.is_main:
            save_png(grid, self.folder.final_samples)
        return {}


class Evaluation(Callback):
    """Every eval_every steps and at the end: the sample metrics of eval_n EMA samples
    (FD, IS, precision, recall, ...) and the test-set bits/dim, logged as eval/*."""

    def __init__(
        self,
        sampling: EmaSampling,
        logging: Logging,
        evaluator: Evaluator | None,
        likelihood: NegativeElbo | None,
    ) -> None:
        self.sampling, self.logging = sampling, logging
        self.evaluator, self.likelihood = evaluator, likelihood

    def evaluate(self, trainer: Trainer) -> dict[str, float]:
        if self.evaluator is None and self.likelihood is None:
            return {}
        step, cfg, metrics = self.sampling.sync(), trainer.cfg, {}
        if self.evaluator is not None:
            batch = min(cfg.sample_n, cfg.eval_n)
            metrics.update(
                self.evaluator.score(
                    step,
                    self.sampling.plan,
                    cfg.eval_n,
                    self.sampling.shape,
                    batch,
                    trainer.seed + 10_000,
                    self.sampling.num_classes,
                )
            )
        if self.likelihood is not None:  # same batch as sampling: one compiled shape
            metrics.update(self.likelihood(step, cfg.sample_n))
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
        self.logging.logger.scalars({f"eval/{k}": v for k, v in scalars.items()}, trainer.step)
        return scalars

    def on_step_end(self, trainer: Trainer, result: StepResult, bar: tqdm) -> None:
        if trainer.cfg.due(trainer.cfg.eval_every, trainer.step):
            self.evaluate(trainer)

    def on_fit_end(self, trainer: Trainer, values: dict[str, float]) -> dict[str, float]:
        return self.evaluate(trainer)


class RankDigests(Callback):
    """Under data parallelism: ranks/rank_<r>.json, digests of this worker's weights and
    EMA, which every rank keeps identical; a mismatch means the workers diverged."""

    def __init__(self, folder: RunFolder) -> None:
        self.folder = folder

    def on_fit_end(self, trainer: Trainer, values: dict[str, float]) -> dict[str, float]:
        step, path = trainer.train_step, self.folder.rank(trainer.world.rank)
        record = {
            "rank": trainer.world.rank,
            "workers": trainer.world.size,
            "step": trainer.step,
            "weights_sha256": checkpoint.digest(step.weights),
            "ema_sha256": checkpoint.digest(step.ema),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        return {}


class Summary(Callback):
    """The final metrics: the HParams row and summary.json. A run whose summary exists
    and whose steps are done is finished: it returns those metrics and trains nothing."""

    def __init__(
        self, folder: RunFolder, logging: Logging, metrics: list[Metric], budget: dict | None
    ) -> None:
        self.folder, self.logging, self.metrics, self.budget = folder, logging, metrics, budget
        self.started = time.time()

    def finished(self, trainer: Trainer) -> dict[str, float] | None:
        if trainer.step < trainer.cfg.steps or not self.folder.summary.is_file():
            return None
        log.info("the run finished at step %d already; nothing to do", trainer.step)
        summary = json.loads(self.folder.summary.read_text())
        return {m.name: summary[m.tag] for m in self.metrics if m.tag in summary}

    def on_fit_start(self, trainer: Trainer) -> None:
        self.started = time.time()

    def on_fit_end(self, trainer: Trainer, values: dict[str, float]) -> dict[str, float]:
        tagged = {m.tag: values[m.name] for m in self.metrics}
        self.logging.logger.hparams_end(tagged, trainer.step)
        summary = {
            **tagged,
            "steps": trainer.step,
            "wall_seconds": time.time() - self.started,
            "train_seconds": trainer.loop_seconds,  # the loop after its first step
        }
        if self.budget:
            summary["budget"] = self.budget
        if trainer.world.is_main:
            atomic.write_text(self.folder.summary, json.dumps(summary, indent=2))
        return {}


class PostHocEma(Callback):
    """The power-function EMAs of post-hoc EMA (ddpm.training.phema), updated after every
    optimiser step, and their snapshots every `every` steps and at the end (rank 0)."""

    def __init__(self, folder: RunFolder, every: int, max_mb: float) -> None:
        self.folder, self.every, self.max_mb = folder, every, max_mb
        self.update: phema.PowerEmaUpdate | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        step = trainer.train_step
        size = sum(int(p.size) for p in step.weights)
        count = (trainer.cfg.steps // self.every if self.every else 0) + 1
        mb = count * phema.snapshot_bytes(size, step.posthoc_stds) / 2**20
        if mb > self.max_mb:
            raise ConfigError(
                f"post-hoc EMA: {count} snapshots of {len(step.posthoc_stds)} EMAs of {size} "
                f"parameters take {mb:.0f} MB, over trainer.posthoc_max_mb={self.max_mb:g}; "
                "raise trainer.posthoc_every or the limit"
            )
        self.update = phema.PowerEmaUpdate(step.power_emas, step.weights)

    def on_step_end(self, trainer: Trainer, result: StepResult, bar: tqdm) -> None:
        betas = [phema.power_beta(s, trainer.step) for s in trainer.train_step.posthoc_stds]
        self.update(Tensor(np.array(betas, np.float32)))
        if trainer.cfg.due(self.every, trainer.step):
            self._snapshot(trainer)

    def on_fit_end(self, trainer: Trainer, values: dict[str, float]) -> dict[str, float]:
        self._snapshot(trainer)
        return {}

    def _snapshot(self, trainer: Trainer) -> None:
        if trainer.world.is_main:
            step = trainer.train_step
            phema.write_snapshot(
                self.folder.posthoc,
                trainer.step,
                step.posthoc_stds,
                step.power_emas,
                step.posthoc_layout,
            )


class Checkpoints(Callback):
    """The full training state every checkpoint_every steps, at the end, and on a signal,
    written by rank 0 only (every rank holds the same); and the restore on resume."""

    def __init__(
        self,
        folder: RunFolder,
        logging: Logging,
        fingerprint: dict[str, Any],
        num_images: int,
        stateful: Sequence[Callback] = (),
    ) -> None:
        self.folder, self.logging = folder, logging
        self.fingerprint, self.num_images = fingerprint, num_images
        self.stateful = list(stateful)  # callbacks whose state() goes into the meta

    def meta(self, trainer: Trainer) -> dict[str, Any]:
        return {
            "step": trainer.step,
            "epoch": trainer.step * trainer.cfg.batch_size // self.num_images,
            "seed": trainer.seed,
            "workers": trainer.world.size,
            "skipped": trainer.skipped,
            "fingerprint": self.fingerprint,
            **{type(c).__name__: c.state(trainer) for c in self.stateful},
        }

    def save(self, trainer: Trainer) -> Path | None:
        """Everything logged so far goes to disk first: a resumed run starts after this
        step and never writes those events again."""
        if not trainer.world.is_main:
            return None
        self.logging.logger.commit()
        return checkpoint.save(
            trainer.train_step,
            self.folder.checkpoints,
            trainer.step,
            self.meta(trainer),
            trainer.cfg.keep_checkpoints,
        )

    def restore(self, trainer: Trainer, candidates: list[Path]) -> Path:
        """Load the newest readable checkpoint of `candidates`; corrupt ones are skipped."""
        errors = []
        for path in candidates:
            try:
                params, meta = checkpoint.load(path)
            except CheckpointError as err:
                log.warning("%s; trying an older checkpoint", err)
                errors.append(f"\n  - {err}")
                continue
            checkpoint.check_fingerprint(meta.get("fingerprint", {}), self.fingerprint, path)
            checkpoint.load_state(trainer.train_step, params)
            trainer.step, trainer.skipped = int(meta["step"]), int(meta.get("skipped", 0))
            for c in self.stateful:
                if type(c).__name__ in meta:
                    c.restore(trainer, meta[type(c).__name__])
            if meta.get("workers", 1) != trainer.world.size:
                log.warning(
                    "%s was written by %s worker(s), resuming on %d: the data order changes",
                    path,
                    meta.get("workers", 1),
                    trainer.world.size,
                )
            return path
        raise CheckpointError("no readable checkpoint to resume from" + "".join(errors))

    def on_step_end(self, trainer: Trainer, result: StepResult, bar: tqdm) -> None:
        if trainer.cfg.due(trainer.cfg.checkpoint_every, trainer.step):
            self.save(trainer)

    def on_fit_end(self, trainer: Trainer, values: dict[str, float]) -> dict[str, float]:
        self.save(trainer)  # last: it marks the run as finished
        return {}

    def on_interrupt(self, trainer: Trainer) -> Path | None:
        return self.save(trainer)
