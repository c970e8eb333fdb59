"""Train one composed config into a run folder: the library under `python -m ddpm.run`
and `ddpm.train`.

It resolves the config once, applies the runtime section and the seed, finds the
checkpoint to resume, fixes a time budget's step count, builds the run and fits it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import mindspore as ms
from omegaconf import DictConfig

from ddpm.config.errors import ConfigError
from ddpm.config.groups import RunConfig, resolve
from ddpm.config.registry import Option
from ddpm.config.run_folder import RunFolder
from ddpm.nn import kernels
from ddpm.runtime.device import configure_runtime
from ddpm.runtime.distributed import World, init_world
from ddpm.training import budget as budgets
from ddpm.training.build import TrainingParts, build_parts, build_probe, build_trainer
from ddpm.training.checkpoint import resolve_resume
from ddpm.training.step import TrainStep

log = logging.getLogger("ddpm")

# alpha_bar_T above this leaves visible signal where sampling starts from pure noise.
TERMINAL_ALPHA_BAR_WARN = 1e-3


def setup_runtime(run: RunConfig) -> World:
    """The runtime section, then the seed; joins the msrun cluster when launched by msrun."""
    configure_runtime(run.runtime)
    ms.set_seed(run.top.seed)  # the same initial weights on every worker
    world = init_world()
    if not world.is_main:  # rank 0 owns the run's log file; the others log to msrun's logs
        for handler in list(logging.getLogger().handlers):
            if isinstance(handler, logging.FileHandler):
                logging.getLogger().removeHandler(handler)
    return world


def report_schedule(alpha_bar_T: float, schedule: Option) -> None:
    """Log alpha_bar_T and the terminal SNR; warn when sampling starts far from the data's
    terminal distribution."""
    snr = alpha_bar_T / max(1.0 - alpha_bar_T, 1e-300)
    log.info(
        "schedule %s, T=%d: alpha_bar_T = %.3g (terminal SNR %.3g, %.1f%% of the image "
        "amplitude survives)",
        schedule.name,
        schedule.shared.timesteps,
        alpha_bar_T,
        snr,
        100 * alpha_bar_T**0.5,
    )
    if alpha_bar_T > TERMINAL_ALPHA_BAR_WARN:
        scale = ""
        if "scale_to_T" in schedule.params:
            scale = "schedule.scale_to_T=true (ends x 1000/T), "
        log.warning(
            "alpha_bar_T = %.3g is far from 0: training never sees pure noise, yet "
            "sampling starts from it. Fixes: %sschedule.zero_terminal_snr=true (with "
            "objective=pred_v), or a larger schedule.timesteps.",
            alpha_bar_T,
            scale,
        )


def fixed_budget(
    parts: TrainingParts, run_dir: Path, world: World
) -> tuple[budgets.Budget | None, TrainStep | None]:
    """trainer.minutes as a step count: the one this run recorded, or timed now on the
    run's own train step (returned with it, compiled and rewound)."""
    run = parts.run
    minutes = run.trainer.minutes
    if minutes is None:
        return None, None
    budget = budgets.recorded(run_dir)
    if budget is not None:
        log.info("budget: %d steps, as fixed when the run started", budget.steps)
        return budget, None
    if world.size > 1:
        raise ConfigError(
            "trainer.minutes needs one step count on every worker; under data parallelism "
            "set trainer.steps instead"
        )
    probe = build_probe(parts, world, budgets.capacity_for(minutes))
    rate, timed = budgets.time_steps(probe, seconds=min(10.0, max(3.0, 3.0 * minutes)))
    budget = budgets.fixed(minutes, rate, timed)
    budgets.record(run_dir, budget, run.composed)
    return budget, probe.train_step


def fit_run(cfg: DictConfig, run_dir: Path) -> tuple[Path, dict[str, float]]:
    """Train the composed config `cfg` into `run_dir`, or the run its trainer.resume names;
    returns that run's folder and its final metrics by name (ddpm.evaluation.metrics)."""
    run = resolve(cfg)  # every key is checked before anything runs
    world = setup_runtime(run)
    resume, candidates = run.trainer.resume, []
    if resume:
        run_dir, candidates = resolve_resume(str(resume), run_dir)
    parts = build_parts(run)
    budget, timed_step = fixed_budget(parts, run_dir, world)
    trainer, checkpoints = build_trainer(parts, run_dir, world, budget, timed_step)
    if candidates:
        restored = checkpoints.restore(trainer, candidates)
        log.info("resumed from %s at step %d", restored, trainer.step)
    elif resume:
        log.info("trainer.resume=%s: no checkpoint yet in %s, starting fresh", resume, run_dir)
    log.info("run dir: %s", run_dir)
    if world.size > 1:
        log.info("data parallel: worker %d of %d", world.rank, world.size)
    log.info(
        "model: %s U-Net, %s blocks, %s attention, %.2fM parameters",
        run["model"].name,
        run["block"].name,
        run["attention"].name,
        sum(p.size for p in parts.network.trainable_params()) / 1e6,
    )
    log.info("fused CPU kernels: %s", "on" if kernels.active() else "off (built-in ops)")
    if parts.diffusion.formulation is None:
        report_schedule(parts.diffusion.terminal_alpha_bar(), run["schedule"])
        if parts.diffusion.variance is not None:
            log.info(
                "learned reverse variances: L_simple + %g L_vlb (Improved DDPM eq. 16)",
                parts.diffusion.variance.vlb_weight,
            )
    else:
        formulation = run["formulation"]
        log.info(
            "formulation %s %s (schedule and objective unused)",
            formulation.name,
            formulation.params,
        )
    log.info(
        "data: %s, %d images of %s; %d steps of batch %d",
        run["dataset"].name,
        len(parts.data.images),
        parts.data.shape,
        trainer.cfg.steps,
        trainer.cfg.batch_size,
    )
    metrics = trainer.fit()
    budget_note = f" (budget {budget.minutes * 60:.0f} s)" if budget else ""
    log.info("training loop: %.1f s after the first step%s", trainer.loop_seconds, budget_note)
    log.info("done: %s; samples in %s", metrics, RunFolder(run_dir).final_samples)
    return run_dir, metrics
