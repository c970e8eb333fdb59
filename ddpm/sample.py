"""Draw samples from a finished run's EMA weights.

    python -m ddpm.sample <run dir> [--n 64] [--sampler dpm_solver --steps 20] [--gif]
    python -m ddpm.sample <conditional run> [--class sneaker | --per-class 8] [--guidance 2]

Writes samples_<sampler>.png (a grid), samples_<sampler>.npz (uint8 images [N, H, W, C],
and for a conditional model their labels [N]) and, with --gif, the denoising of the first
16 samples as samples_<sampler>.gif. A class-conditional model draws the classes given by
--class (names or indices, comma-separated; they take turns), or with --per-class K a grid
of one row of K samples per class, or by default every class in turn (a column each).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
import numpy as np
from mindspore import nn
from omegaconf import DictConfig

from ddpm import checkpoint
from ddpm.build import build_denoiser, default_section, saved_conditioning, section
from ddpm.cli import (
    existing_file,
    float_list,
    non_negative_float,
    non_negative_int,
    positive_int,
    run_dir,
    run_tool,
)
from ddpm.conditioning import (
    balanced_labels,
    check_guidance,
    class_index,
    is_conditional,
    per_class_labels,
)
from ddpm.diffusion import GaussianDiffusion
from ddpm.images import make_grid, save_gif, save_png, to_uint8
from ddpm.registry import ConfigError, Option
from ddpm.reverse_step import ReverseStep, p_sample_loop
from ddpm.runs import load_config
from ddpm.runtime import configure_runtime, runtime_keys
from ddpm.samplers import SAMPLERS, SamplerPlan, make_plan
from ddpm.train_step import load_ema

# Command-line flags that override a key of the sampler section.
SAMPLER_FLAGS = ("steps", "eta", "order", "guidance", "guidance_interval")


def interval(text: str) -> list[float]:
    """'lo,hi' -> [lo, hi]: two fractions of T."""
    return float_list(text, 2)


def add_sampler_flags(p: argparse.ArgumentParser) -> None:
    """--sampler and the flags that override its keys (default: the run's own sampler)."""
    p.add_argument("--sampler", choices=SAMPLERS.names(), help="default: the run's sampler")
    p.add_argument("--steps", type=positive_int, help="timesteps visited (at most T)")
    p.add_argument("--eta", type=non_negative_float, help="DDIM eta (0 = deterministic)")
    p.add_argument("--order", type=positive_int, help="DPM-Solver++ order (1 or 2)")
    p.add_argument(
        "--guidance",
        type=non_negative_float,
        help="classifier-free guidance w of a conditional model: 0 unconditional, 1 conditional",
    )
    p.add_argument(
        "--guidance-interval",
        type=interval,
        metavar="LO,HI",
        help="apply w only at steps with t/T in (LO, HI]; w = 1 elsewhere",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ddpm.sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=run_dir, help="a training run's output folder")
    p.add_argument("--checkpoint", type=existing_file, help="default: the run's latest")
    p.add_argument("--n", type=positive_int, default=64, help="number of samples")
    p.add_argument(
        "--class",
        dest="classes",
        help="conditional models: the class(es) to draw, names or indices, comma-separated",
    )
    p.add_argument(
        "--per-class",
        type=positive_int,
        help="conditional models: a grid of this many samples per class, one row each",
    )
    add_sampler_flags(p)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--gif", action="store_true", help="also write the denoising animation")
    p.add_argument("--out", type=Path, help="output folder (default: the run dir)")
    return p.parse_args(argv)


def sampler_option(cfg: DictConfig, args: argparse.Namespace) -> Option:
    """The run's sampler section, or another sampler's YAML, with the flags applied."""
    name = args.sampler or cfg.sampler.name
    sampler = (
        section(cfg, "sampler") if name == cfg.sampler.name else default_section("sampler", name)
    )
    for flag in SAMPLER_FLAGS:
        value = getattr(args, flag)
        if value is None:
            continue
        if flag not in {**SAMPLERS.shared_keys(), **SAMPLERS.own_keys(name)}:
            raise ConfigError(f"--{flag.replace('_', '-')} does not apply to the {name} sampler")
        sampler[flag] = value
    option = SAMPLERS.resolve(sampler)
    if args.guidance is not None:
        check_guidance(saved_conditioning(cfg), args.guidance)
    return option


@dataclass
class LoadedRun:
    cfg: DictConfig
    diffusion: GaussianDiffusion
    network: nn.Cell  # with the EMA weights
    checkpoint: Path
    step: int
    classes: list[str]  # a conditional model's class names; [] for an unconditional one

    def sampling(self, sampler: Option) -> tuple[ReverseStep, SamplerPlan]:
        """The compiled reverse step of this run's EMA network and the plan of `sampler`."""
        plan = make_plan(sampler, self.diffusion)
        clip = sampler.shared.clip_denoised
        return ReverseStep(self.network, self.diffusion.objective, clip, plan.guidance), plan


def load_run(run_dir: Path, ckpt: Path | None = None) -> LoadedRun:
    """A finished run's config and EMA network (from `ckpt`, default its latest checkpoint)."""
    cfg = load_config(run_dir)
    configure_runtime(runtime_keys(section(cfg, "runtime")), mode="graph")
    ckpt = ckpt or next(iter(checkpoint.candidates(run_dir / "checkpoints")), None)
    if ckpt is None:
        raise checkpoint.CheckpointError(f"no checkpoint under {run_dir / 'checkpoints'}")
    params, meta = checkpoint.load(ckpt)
    classes = meta.get("fingerprint", {}).get("classes")  # saved by a conditional run
    diffusion, network = build_denoiser(cfg, classes)
    try:
        load_ema(network, params)
    except KeyError as err:
        raise checkpoint.CheckpointError(f"{ckpt} does not fit the run's model: {err}") from None
    return LoadedRun(cfg, diffusion, network, ckpt, int(meta["step"]), classes or [])


def check_class_flags(cfg: DictConfig, args: argparse.Namespace) -> None:
    """--class and --per-class, before anything loads: they need a conditional run."""
    if (args.classes or args.per_class) and not is_conditional(saved_conditioning(cfg)):
        raise ConfigError("--class and --per-class need a class-conditional run")


def sample_labels(args: argparse.Namespace, classes: list[str]) -> tuple[np.ndarray | None, int]:
    """The labels to draw ([N] or None for an unconditional model) and the grid's columns."""
    if not classes:
        return None, 0
    if args.per_class:
        return per_class_labels(args.per_class, len(classes)), args.per_class
    if args.classes:
        wanted = [class_index(q, classes) for q in args.classes.split(",")]
        return np.resize(np.array(wanted, np.int32), args.n), 0
    return balanced_labels(args.n, len(classes)), len(classes)  # a column per class


def sample(args: argparse.Namespace) -> int:
    cfg = load_config(args.run_dir)
    sampler = sampler_option(cfg, args)  # the flags, before any loading
    check_class_flags(cfg, args)
    run = load_run(args.run_dir, args.checkpoint)
    c, size = cfg.dataset.channels, cfg.dataset.image_size
    labels, columns = sample_labels(args, run.classes)
    n = args.n if labels is None else len(labels)
    step, plan = run.sampling(sampler)
    frames: list[np.ndarray] = []
    keep = set(np.linspace(0, plan.num_steps - 1, min(plan.num_steps, 40)).round().astype(int))
    on_step = (
        (lambda i, x: frames.append(make_grid(to_uint8(x[:16]), nrow=4)) if i in keep else None)
        if args.gif
        else None
    )
    x = p_sample_loop(
        step, plan, (n, c, size, size), seed=args.seed, on_step=on_step, labels=labels
    )
    images = to_uint8(x)
    out = args.out or args.run_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"samples_{sampler.name}"
    save_png(make_grid(images, nrow=columns or None), stem.with_suffix(".png"))
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
    np.savez_compressed(stem.with_suffix(".npz"), **arrays)
    if args.gif:
        save_gif(frames, stem.with_suffix(".gif"))
    what = ""
    if labels is not None:
        drawn = sorted(set(labels.tolist()))
        what = (
            f" of {', '.join(run.classes[i] for i in drawn)} (guidance {sampler.shared.guidance})"
        )
    print(
        f"{n} samples{what} from step {run.step} ({run.checkpoint.name}) with {sampler.name} "
        f"({plan.num_steps} steps) -> {stem}.png/.npz{'/.gif' if args.gif else ''}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: sample(args))


if __name__ == "__main__":
    sys.exit(main())
