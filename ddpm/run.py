"""Train one configuration: `python -m ddpm.run schedule=cosine block=resnet`.

Hydra composes conf/; this entry point seeds, builds the run from the config, and fits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import traceback
import warnings
from dataclasses import asdict
from pathlib import Path

import hydra
import mindspore as ms
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ddpm import kernels
from ddpm.budget import Budget, record, recorded, steps_for
from ddpm.build import RunConfig, build_trainer, resolve
from ddpm.callbacks import FAILED_MARKER, SWEEP_KEYS_ENV
from ddpm.checkpoint import CheckpointError, resolve_resume
from ddpm.data import DatasetError
from ddpm.distributed import World, init_world
from ddpm.metrics import METRICS
from ddpm.registry import ConfigError, Option
from ddpm.runtime import RuntimeKeys, configure_runtime
from ddpm.trainer import Interrupted, NonFiniteLoss

log = logging.getLogger("ddpm")

# alpha_bar_T above this leaves visible signal where sampling starts from pure noise.
TERMINAL_ALPHA_BAR_WARN = 1e-3
# Exit codes: 2 bad config/data/checkpoint, 3 non-finite loss, 128 + signal when interrupted.
EXIT_CODES = {ConfigError: 2, DatasetError: 2, CheckpointError: 2, NonFiniteLoss: 3}


def run_name(overrides: list[str] | str, limit: int = 120) -> str:
    """A sweep run's folder (and TensorBoard) name: the overrides of the keys the sweep
    varies (all of them outside a sweep), shortened with a hash past `limit` characters."""
    if isinstance(overrides, str):
        overrides = [overrides] if overrides else []
    varied = [k for k in os.environ.get(SWEEP_KEYS_ENV, "").split(",") if k]
    chosen = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in varied] if varied else []
    name = ",".join(sorted(chosen or overrides)).replace("/", "_") or "default"
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver("run_name", run_name, replace=True)
# conf/hydra/launcher/*.yaml set our defaults on the launcher plugins' schemas of the same
# name; Hydra validates them against those schemas and warns that this is deprecated.
warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema")


def setup_runtime(seed: int, runtime: RuntimeKeys) -> World:
    """The runtime section, then the seed; joins the msrun cluster when launched by msrun."""
    configure_runtime(runtime)
    ms.set_seed(seed)  # the same initial weights on every worker
    world = init_world()
    if not world.is_main:  # rank 0 owns the run's log file; the others log to msrun's logs
        for handler in list(logging.getLogger().handlers):
            if isinstance(handler, logging.FileHandler):
                logging.getLogger().removeHandler(handler)
    return world


def report_schedule(alpha_bar_T: float, schedule: Option) -> None:
    name, timesteps = schedule.name, schedule.shared.timesteps
    snr = alpha_bar_T / max(1.0 - alpha_bar_T, 1e-300)
    log.info(
        "schedule %s, T=%d: alpha_bar_T = %.3g (terminal SNR %.3g, %.1f%% of the image "
        "amplitude survives)",
        name,
        timesteps,
        alpha_bar_T,
        snr,
        100 * alpha_bar_T**0.5,
    )
    if alpha_bar_T > TERMINAL_ALPHA_BAR_WARN:
        scale = (
            "schedule.scale_to_T=true (ends x 1000/T), " if "scale_to_T" in schedule.params else ""
        )
        log.warning(
            "alpha_bar_T = %.3g is far from 0: training never sees pure noise, yet "
            "sampling starts from it. Fixes: %sschedule.zero_terminal_snr=true (with "
            "objective=pred_v), or a larger schedule.timesteps.",
            alpha_bar_T,
            scale,
        )


def fixed_budget(cfg: DictConfig, run: RunConfig, run_dir: Path, world: World) -> Budget | None:
    """trainer.minutes as a step count: the one this run recorded, or timed now."""
    minutes = run.trainer.minutes
    if minutes is None:
        return None
    budget = recorded(run_dir)
    if budget is not None:
        log.info("budget: %d steps, as fixed when the run started", budget.steps)
        return budget
    if world.size > 1:
        raise ConfigError(
            "trainer.minutes needs one step count on every worker; under data parallelism "
            "set trainer.steps instead"
        )
    probe = build_trainer(cfg, run_dir, world)
    rate, timed = probe.time_steps(seconds=min(10.0, max(3.0, 3.0 * minutes)))
    del probe
    ms.set_seed(run.top.seed)  # the run itself starts from the weights it would without
    budget = Budget(minutes, rate, timed, steps_for(minutes, rate))
    record(run_dir, budget, cfg)
    return budget


def train(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    run = resolve(cfg)  # every key is checked before anything runs
    world = setup_runtime(run.top.seed, run.runtime)
    resume = run.trainer.resume
    candidates: list[Path] = []
    if resume:
        run_dir, candidates = resolve_resume(str(resume), run_dir)
    budget = fixed_budget(cfg, run, run_dir, world)
    trainer = build_trainer(cfg, run_dir, world, asdict(budget) if budget else None)
    if candidates:
        log.info("resumed from %s at step %d", trainer.restore(candidates), trainer.step)
    elif resume:
        log.info("trainer.resume=%s: no checkpoint yet in %s, starting fresh", resume, run_dir)
    parts = trainer.parts
    log.info("run dir: %s", run_dir)
    if world.size > 1:
        log.info("data parallel: worker %d of %d", world.rank, world.size)
    log.info(
        "model: %s U-Net, %s blocks, %s attention, %.2fM parameters",
        cfg.model.name,
        cfg.block.name,
        cfg.attention.name,
        sum(p.size for p in parts.train_step.loss_fn.network.trainable_params()) / 1e6,
    )
    log.info("fused CPU kernels: %s", "on" if kernels.active() else "off (built-in ops)")
    report_schedule(parts.diffusion.terminal_alpha_bar(), run["schedule"])
    log.info(
        "data: %s, %d images of %s; %d steps of batch %d",
        cfg.dataset.name,
        len(parts.data.images),
        parts.data.shape,
        trainer.cfg.steps,
        trainer.cfg.batch_size,
    )
    metrics = trainer.fit()
    budget_note = f" (budget {budget.minutes * 60:.0f} s)" if budget else ""
    log.info("training loop: %.1f s after the first step%s", trainer.loop_seconds, budget_note)
    log.info("done: %s; samples in %s", metrics, run_dir / "samples.png")
    return metrics


def exit_code(err: BaseException) -> int | None:
    """The exit code of an expected failure (subclasses included); None for a bug."""
    return next((code for kind, code in EXIT_CODES.items() if isinstance(err, kind)), None)


def fail(err: BaseException, run_dir: Path, multirun: bool) -> float:
    """Report a failed run. A sweep goes on (ddpm.callbacks sums up); a single run exits."""
    if isinstance(err, Interrupted):
        where = err.path.parent.parent if err.path else run_dir  # rank 0 wrote the checkpoint
        log.warning("interrupted: %s. Resume with trainer.resume=%s", err, where)
        sys.exit(128 + err.signum)  # also stops a sweep: the user asked to stop
    code = exit_code(err)
    message = str(err) if code else "".join(traceback.format_exception(err))
    log.error("%s", message)
    if multirun:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / FAILED_MARKER).write_text(f"{type(err).__name__}: {err}\n")
        return float("nan")
    print(f"error: {err}", file=sys.stderr)
    sys.exit(code or 1)


LENGTH_KEYS = ("trainer.steps", "trainer.epochs")


def check_length_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """trainer.minutes decides the run's length over steps and epochs, so a command line that
    sets either of those while minutes is on (the default recipe's budget) is an error."""
    keys = [o.split("=", 1)[0].lstrip("+") for o in overrides]
    given = [o for o, key in zip(overrides, keys, strict=True) if key in LENGTH_KEYS]
    if given and cfg.trainer.get("minutes") is not None and "trainer.minutes" not in keys:
        minutes = cfg.trainer.minutes
        raise ConfigError(
            f"{given[0]} has no effect while trainer.minutes={minutes} sets the run's "
            "length; add trainer.minutes=null to train a step or epoch count"
        )


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    (run_dir / FAILED_MARKER).unlink(missing_ok=True)  # a re-run of a failed sweep job
    try:
        check_length_overrides(cfg, list(hydra_cfg.overrides.task))
        return train(cfg, run_dir)[METRICS[cfg.sweep_metric].tag]
    except Exception as err:  # noqa: BLE001 (every failure is reported; see fail())
        return fail(err, run_dir, hydra_cfg.mode == RunMode.MULTIRUN)


if __name__ == "__main__":
    main()
