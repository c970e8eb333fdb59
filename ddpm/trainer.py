"""The fit loop: feeds the compiled TrainStep, samples from the EMA weights, logs, checkpoints."""

from __future__ import annotations

import json
import logging
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from mindspore import Tensor, nn
from mindspore import dtype as mstype
from tqdm import tqdm

from ddpm import atomic, checkpoint
from ddpm.conditioning import drop_labels, per_class_labels
from ddpm.data import ImageData, batch_stream
from ddpm.diffusion import GaussianDiffusion, q_sample
from ddpm.distributed import World
from ddpm.images import make_grid, save_png, to_uint8
from ddpm.logger import NullLogger, TensorBoardLogger
from ddpm.metrics import Metric, computed_by
from ddpm.quality.bpd import NegativeElbo
from ddpm.quality.evaluator import Evaluator
from ddpm.registry import ConfigError, Registry
from ddpm.reverse_step import ReverseStep, p_sample_loop
from ddpm.samplers import SamplerPlan
from ddpm.schedule_lr import ema_decay
from ddpm.schema import (
    Decay,
    Length,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
)
from ddpm.train_step import TrainStep, load_ema

log = logging.getLogger("ddpm")


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the current step finished and a checkpoint was written."""

    def __init__(self, signum: int, step: int, path: Path | None) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}; checkpoint {path}")
        self.signum, self.step, self.path = signum, step, path


class NonFiniteLoss(FloatingPointError):
    """The loss or gradient norm became NaN/inf; nothing from this step was saved."""


@dataclass(frozen=True)
class TrainerConfig:
    """The trainer section's keys; conf/trainer/default.yaml documents and sets each one."""

    steps: PositiveInt
    epochs: Annotated[int | None, Range(gt=0)]  # if set, steps = epochs * steps per epoch
    minutes: Annotated[float | None, Range(gt=0)]  # if set, steps = what fits (ddpm.budget)
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


@dataclass
class RunParts:
    """Everything the trainer drives, built by ddpm.build."""

    train_step: TrainStep
    ema_network: nn.Cell
    reverse_step: ReverseStep  # wraps ema_network
    plan: SamplerPlan
    diffusion: GaussianDiffusion
    data: ImageData
    lrs: np.ndarray  # [steps] learning rate per step (also inside the optimiser)
    hparams: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    fingerprint: dict[str, Any] = field(default_factory=dict)
    evaluator: Evaluator | None = None  # sample-quality metrics (trainer.eval_n > 0)
    likelihood: NegativeElbo | None = None  # test-set bits/dim (trainer.bpd_n > 0)
    budget: dict[str, Any] | None = None  # how trainer.minutes fixed the step count
    classes: list[str] = field(default_factory=list)  # a conditional model's; [] otherwise
    p_uncond: float = 0.0  # label dropout (ddpm.conditioning)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass
class _Window:
    """Running sums between two log points."""

    losses: list[np.ndarray] = field(default_factory=list)
    timesteps: list[np.ndarray] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)


TRAINERS = Registry("trainer")


@TRAINERS.register("default", schema=TrainerConfig)
class Trainer:
    """Drives one run; under data parallelism every worker runs it, rank 0 writes."""

    def __init__(
        self,
        cfg: TrainerConfig,
        parts: RunParts,
        run_dir: Path,
        seed: int,
        world: World | None = None,
    ) -> None:
        self.cfg, self.parts, self.run_dir, self.seed = cfg, parts, run_dir, seed
        self.world = world or World()
        self.local_batch = self.world.local_batch(cfg.batch_size)
        self.step = 0
        self.ckpt_dir = run_dir / "checkpoints"
        self.logger: TensorBoardLogger | NullLogger | None = None
        self.last_loss = float("nan")
        self.skipped = 0
        self.images_per_s = float("nan")
        self.started = time.time()
        self.loop_start: float | None = None  # after this process's first (compiling) step
        self.loop_seconds = 0.0
        self._signal: int | None = None

    @property
    def metrics(self) -> list[Metric]:
        """The metrics this run reports (ddpm.metrics)."""
        return computed_by(self.cfg, conditional=self.parts.num_classes > 0)

    # ---- the loop -------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        """Train from self.step to cfg.steps; returns the final metrics."""
        main = self.world.is_main
        if self.step >= self.cfg.steps and self.summary_path.is_file():
            log.info("the run finished at step %d already; nothing to do", self.step)
            summary = json.loads(self.summary_path.read_text())
            return {m.tag: summary[m.tag] for m in self.metrics if m.tag in summary}
        # On resume from step S, events after S go (the re-run writes them again); those at S,
        # such as its loss, were written before the checkpoint and stay.
        purge = self.step + 1 if self.step else None
        self.logger = TensorBoardLogger(self.run_dir, purge_step=purge) if main else NullLogger()
        self.started = time.time()
        self._announce()
        shard = (self.world.rank, self.world.size)
        batches = batch_stream(self.parts.data, self.local_batch, self.seed, self.step, shard)
        window = _Window()
        bar = tqdm(
            total=self.cfg.steps,
            initial=self.step,
            desc="train",
            dynamic_ncols=True,
            disable=not main,
        )
        try:
            with self._stop_on_signals():
                while self.step < self.cfg.steps and self._signal is None:
                    self._train_one(next(batches), window)
                    self._clock()
                    bar.update(1)
                    if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                        bar.set_postfix(self._log_window(window))
                        window = _Window()
                    self._periodic()
        except BaseException:
            self.logger.close()  # what was logged before the failure stays
            raise
        finally:
            bar.close()
        if self._signal is not None:
            path = self.save_checkpoint()
            self.logger.close()
            raise Interrupted(self._signal, self.step, path)
        return self._finish()

    @contextmanager
    def _stop_on_signals(self):
        """SIGINT/SIGTERM let the current step finish; a second signal stops at once.

        MindSpore's runtime re-installs its own SIGINT handler at every graph launch, and it
        raises SIGTERM: so Ctrl-C during training arrives here as SIGTERM. Both stop cleanly.
        """
        self._signal = None

        def handler(signum, _frame):
            if self._signal is not None:  # the second signal: stop now
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)
            self._signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _train_one(self, batch: tuple[np.ndarray, np.ndarray], window: _Window) -> None:
        # t, eps and the label dropout of step n depend only on (seed, rank, n): workers
        # differ, resume is exact.
        x_start, labels = batch
        rng = np.random.default_rng((self.seed, self.world.rank, self.step))
        t = rng.integers(0, self.parts.diffusion.num_timesteps, size=len(x_start))
        noise = rng.standard_normal(x_start.shape, dtype=np.float32)
        if self.parts.num_classes:
            labels = drop_labels(labels, self.parts.p_uncond, self.parts.num_classes, rng)
        decay = ema_decay(self.step, self.cfg.ema_decay, self.cfg.ema_warmup)
        losses, grad_norm = self.parts.train_step(
            Tensor(x_start),
            Tensor(t.astype(np.int32)),
            Tensor(noise),
            Tensor(labels.astype(np.int32)),
            Tensor(decay, mstype.float32),
        )
        losses, grad_norm = losses.asnumpy(), float(grad_norm.asnumpy())
        self.step += 1
        if not (np.all(np.isfinite(losses)) and np.isfinite(grad_norm)):
            self._non_finite(losses, grad_norm)
            return
        window.losses.append(losses)
        window.timesteps.append(t)
        window.grad_norms.append(grad_norm)

    def _clock(self) -> None:
        """Time the loop from the end of its first step, which compiles the graph."""
        now = time.perf_counter()
        if self.loop_start is None:
            self.loop_start = now
        self.loop_seconds = now - self.loop_start

    def time_steps(self, seconds: float, warmup: int = 2) -> tuple[float, int]:
        """(steps per second, steps timed) of this run's loop body on its real batches,
        after `warmup` steps (the first compiles). It trains this trainer's state.

        The rate is 1 / the median step time, which a burst of other load on the machine
        moves less than it moves the mean."""
        shard = (self.world.rank, self.world.size)
        batches = batch_stream(self.parts.data, self.local_batch, self.seed, self.step, shard)
        window = _Window()
        for _ in range(warmup):
            self._train_one(next(batches), window)
        start, times = time.perf_counter(), []
        while len(times) < 3 or time.perf_counter() - start < seconds:
            begin = time.perf_counter()
            self._train_one(next(batches), window)
            times.append(time.perf_counter() - begin)
        return 1.0 / float(np.median(times)), len(times)

    def _non_finite(self, losses: np.ndarray, grad_norm: float) -> None:
        """Stop (the default) or count a skipped step; a bad step never reaches a checkpoint."""
        if self.cfg.skip_nonfinite:  # the compiled step already left the weights untouched
            self.skipped += 1
            self.logger.scalars({"train/skipped_steps": self.skipped}, self.step)
            return
        raise NonFiniteLoss(
            f"non-finite loss or gradient at step {self.step} (loss {float(np.mean(losses)):.4g}, "
            f"grad norm {grad_norm:.4g}). Likely causes: a learning rate too high for the "
            "model (trainer.lr), no gradient clipping (trainer.grad_clip=0), or p2/min-SNR "
            "weights that blow up at small SNR. The last good checkpoint is untouched; resume "
            "from it with a smaller trainer.lr, or set trainer.skip_nonfinite=true."
        )

    def _periodic(self) -> None:
        """Mid-run samples, evaluations and checkpoints; the final ones come from _finish.

        The checkpoint comes last: it marks everything logged up to its step as done.
        """
        if self._due(self.cfg.sample_every):
            self.sample_and_log()
        if self._due(self.cfg.eval_every):
            self.evaluate()
        if self._due(self.cfg.checkpoint_every):
            self.save_checkpoint()

    def _due(self, every: int) -> bool:
        return every > 0 and self.step % every == 0 and self.step < self.cfg.steps

    # ---- logging --------------------------------------------------------------------
    def _announce(self) -> None:
        """Schedule sanity, resolved config, hparams, and the forward-process strip."""
        ab_T = self.parts.diffusion.terminal_alpha_bar()
        self.logger.scalars({"schedule/alpha_bar_T": ab_T}, self.step)
        self.logger.text("config", f"```\n{self.parts.config_text}\n```", self.step)
        metric_tags = [m.tag for m in self.metrics]
        self.logger.hparams_start(self.parts.hparams, metric_tags)
        if self.step == 0:
            self.logger.image("data/forward_process", self._forward_strip(), 0)
            if self.parts.budget:
                budget = {f"budget/{k}": v for k, v in self.parts.budget.items()}
                self.logger.scalars(budget, 0)

    def _forward_strip(self, columns: int = 8) -> np.ndarray:
        """One real image noised by q(x_t | x_0) at evenly spaced t, left (t=0) to right (T-1)."""
        d = self.parts.diffusion
        x0, _ = next(batch_stream(self.parts.data, 1, self.seed))  # [1, C, H, W]
        ts = np.linspace(0, d.num_timesteps - 1, columns).round().astype(int)
        noise = np.random.default_rng(self.seed).standard_normal(x0.shape)
        strip = [
            q_sample(x0, noise, d.sqrt_alphas_cumprod[t], d.sqrt_one_minus_alphas_cumprod[t])
            for t in ts
        ]
        return make_grid(to_uint8(np.concatenate(strip)), nrow=columns)

    def _log_window(self, window: _Window) -> dict[str, str]:
        if not window.losses:  # every step of the window was skipped as non-finite
            return {"skipped": str(self.skipped)}
        losses = np.concatenate(window.losses)
        ts = np.concatenate(window.timesteps)
        seconds = time.perf_counter() - window.start
        images_per_s = len(losses) * self.world.size / max(seconds, 1e-9)  # all workers
        self.last_loss = float(losses.mean())
        values = {
            "train/loss": self.last_loss,
            "train/lr": float(self.parts.lrs[min(self.step, len(self.parts.lrs)) - 1]),
            "train/grad_norm": float(np.mean(window.grad_norms)),
            "perf/images_per_s": images_per_s,
        }
        quarter = ts * 4 // self.parts.diffusion.num_timesteps
        for q in range(4):  # improved-diffusion's loss_q0..q3 diagnostic
            if np.any(quarter == q):
                values[f"train/loss_q{q}"] = float(losses[quarter == q].mean())
        self.logger.scalars(values, self.step)
        self.images_per_s = images_per_s
        return {"loss": f"{self.last_loss:.4f}", "img/s": f"{images_per_s:.1f}"}

    # ---- sampling and checkpoints ---------------------------------------------------
    def _sync_ema(self) -> None:
        """Copy the current EMA weights into the network the reverse step samples with."""
        load_ema(self.parts.ema_network, {p.name: p for p in self.parts.train_step.ema})

    def sample_and_log(self) -> np.ndarray:
        """Draw cfg.sample_n samples from the EMA weights; log, save and return their grid
        (uint8 [H, W, C]). A conditional model's grid has one row per class, of
        ceil(sample_n / K) samples."""
        self._sync_ema()
        c, h, w = self.parts.data.shape
        k, n, per_row, labels = self.parts.num_classes, self.cfg.sample_n, None, None
        if k:
            per_row = -(-n // k)
            labels = per_class_labels(per_row, k)
        x = p_sample_loop(
            self.parts.reverse_step,
            self.parts.plan,
            (len(labels) if k else n, c, h, w),
            seed=self.seed + 1,
            labels=labels,
        )
        grid = make_grid(to_uint8(x), nrow=per_row)
        self.logger.image("samples/ema", grid, self.step)
        if self.world.is_main:
            save_png(grid, self.run_dir / "samples" / f"step_{self.step:08d}.png")
        return grid

    def evaluate(self) -> dict[str, float]:
        """Sample metrics (FD, IS, precision, recall) of eval_n EMA samples and the test-set
        bits/dim of the EMA weights; logged as eval/*."""
        if self.parts.evaluator is None and self.parts.likelihood is None:
            return {}
        self._sync_ema()
        metrics: dict[str, Any] = {}
        if self.parts.evaluator is not None:
            scores = self.parts.evaluator.score(
                self.parts.reverse_step,
                self.parts.plan,
                self.cfg.eval_n,
                self.parts.data.shape,
                min(self.cfg.sample_n, self.cfg.eval_n),
                self.seed + 10_000,
                self.parts.num_classes,
            )
            metrics.update(scores)
        if self.parts.likelihood is not None:  # same batch as sampling: one compiled shape
            metrics.update(self.parts.likelihood(self.parts.reverse_step, self.cfg.sample_n))
        scalars = {f"eval/{k}": v for k, v in metrics.items() if isinstance(v, float)}
        self.logger.scalars(scalars, self.step)
        return scalars

    def checkpoint_meta(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.step * self.cfg.batch_size // len(self.parts.data.images),
            "seed": self.seed,
            "workers": self.world.size,
            "skipped": self.skipped,
            "fingerprint": self.parts.fingerprint,
        }

    def restore(self, candidates: list[Path]) -> Path:
        """Load the newest readable checkpoint of `candidates`; corrupt ones are skipped."""
        errors = []
        for path in candidates:
            try:
                params, meta = checkpoint.load(path)
            except checkpoint.CheckpointError as err:
                log.warning("%s; trying an older checkpoint", err)
                errors.append(f"\n  - {err}")
                continue
            checkpoint.check_fingerprint(meta.get("fingerprint", {}), self.parts.fingerprint, path)
            checkpoint.load_state(self.parts.train_step, params)
            self.step, self.skipped = int(meta["step"]), int(meta.get("skipped", 0))
            if meta.get("workers", 1) != self.world.size:
                log.warning(
                    "%s was written by %s worker(s), resuming on %d: the data order changes",
                    path,
                    meta.get("workers", 1),
                    self.world.size,
                )
            return path
        raise checkpoint.CheckpointError("no readable checkpoint to resume from" + "".join(errors))

    def save_checkpoint(self) -> Path | None:
        """The full training state, written by rank 0 only (every rank holds the same).

        Everything logged so far goes to disk first: a resumed run starts after this step
        and never writes those events again.
        """
        if not self.world.is_main:
            return None
        self.logger.commit()
        return checkpoint.save(
            self.parts.train_step,
            self.ckpt_dir,
            self.step,
            self.checkpoint_meta(),
            self.cfg.keep_checkpoints,
        )

    @property
    def summary_path(self) -> Path:
        return self.run_dir / "summary.json"

    def _finish(self) -> dict[str, float]:
        """Final samples, metrics and summary.json, then the final checkpoint, which marks
        the run as finished: a crash before it redoes this from the last checkpoint."""
        grid = self.sample_and_log()
        if self.world.is_main:
            save_png(grid, self.run_dir / "samples.png")
        if self.world.size > 1:
            self._record_rank()
        values = {"final_loss": self.last_loss, "images_per_s": self.images_per_s}
        values.update({k.split("/")[1]: v for k, v in self.evaluate().items()})  # eval/fd -> fd
        metrics = {m.tag: values[m.name] for m in self.metrics}
        self.logger.hparams_end(metrics, self.step)
        summary = {
            **metrics,
            "steps": self.step,
            "wall_seconds": time.time() - self.started,
            "train_seconds": self.loop_seconds,  # the loop after its first step (this process)
        }
        if self.parts.budget:
            summary["budget"] = self.parts.budget
        if self.world.is_main:
            atomic.write_text(self.summary_path, json.dumps(summary, indent=2))
        self.save_checkpoint()
        self.logger.close()
        return metrics

    def _record_rank(self) -> None:
        """ranks/rank_<r>.json: digests of this worker's weights and EMA, which data
        parallelism keeps identical on every rank; a mismatch means the workers diverged."""
        step = self.parts.train_step
        record = {
            "rank": self.world.rank,
            "workers": self.world.size,
            "step": self.step,
            "weights_sha256": checkpoint.digest(step.weights),
            "ema_sha256": checkpoint.digest(step.ema),
        }
        folder = self.run_dir / "ranks"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"rank_{self.world.rank}.json").write_text(json.dumps(record, indent=2))
