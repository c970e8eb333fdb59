"""Draw samples from a finished run's EMA weights.

    python -m ddpm.sample <run dir> [--n 64] [--sampler ddim --steps 50 --eta 0] [--gif]

Writes samples_<sampler>.png (a grid), samples_<sampler>.npz (uint8 images [N, H, W, C])
and, with --gif, the denoising of the first 16 samples as samples_<sampler>.gif.
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
from omegaconf import DictConfig, OmegaConf

from ddpm import checkpoint
from ddpm.build import CONF_DIR, build_denoiser, build_plan, configure_runtime, section
from ddpm.diffusion import GaussianDiffusion
from ddpm.images import make_grid, save_gif, save_png, to_uint8
from ddpm.reverse_step import ReverseStep, p_sample_loop
from ddpm.train_step import load_ema


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ddpm.sample",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=Path, help="a training run's output folder")
    p.add_argument("--checkpoint", type=Path, help="default: the run's latest checkpoint")
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], help="default: the run's sampler")
    p.add_argument("--steps", type=int, help="DDIM steps")
    p.add_argument("--eta", type=float, help="DDIM eta (0 = deterministic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gif", action="store_true", help="also write the denoising animation")
    p.add_argument("--out", type=Path, help="output folder (default: the run dir)")
    return p.parse_args(argv)


def sampler_section(cfg: DictConfig, args: argparse.Namespace) -> dict:
    """The run's sampler config, with the command line's choices applied."""
    if args.sampler and args.sampler != cfg.sampler.name:
        conf = CONF_DIR / "sampler" / f"{args.sampler}.yaml"
        sampler = OmegaConf.to_container(OmegaConf.load(conf))
    else:
        sampler = section(cfg, "sampler")
    sampler.update({k: getattr(args, k) for k in ("steps", "eta") if getattr(args, k) is not None})
    if sampler["name"] == "ddpm":
        sampler = {k: v for k, v in sampler.items() if k not in ("steps", "eta")}
    return sampler


@dataclass
class LoadedRun:
    cfg: DictConfig
    diffusion: GaussianDiffusion
    network: nn.Cell  # with the EMA weights
    checkpoint: Path
    step: int


def load_run(run_dir: Path, ckpt: Path | None = None) -> LoadedRun:
    """A finished run's config and EMA network (from `ckpt`, default its latest checkpoint)."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    configure_runtime(section(cfg, "runtime"), mode="graph")
    ckpt = ckpt or next(iter(checkpoint.candidates(run_dir / "checkpoints")), None)
    if ckpt is None:
        raise checkpoint.CheckpointError(f"no checkpoint under {run_dir / 'checkpoints'}")
    params, meta = checkpoint.load(ckpt)
    diffusion, network = build_denoiser(cfg)
    load_ema(network, params)
    return LoadedRun(cfg, diffusion, network, ckpt, int(meta["step"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run = load_run(args.run_dir, args.checkpoint)
    except checkpoint.CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cfg, diffusion, network = run.cfg, run.diffusion, run.network
    c, size = cfg.dataset.channels, cfg.dataset.image_size
    sampler = sampler_section(cfg, args)
    step = ReverseStep(network, diffusion.objective, sampler.get("clip_denoised", True))
    frames: list[np.ndarray] = []
    plan = build_plan(sampler, diffusion)
    keep = set(np.linspace(0, plan.num_steps - 1, min(plan.num_steps, 40)).round().astype(int))
    on_step = (
        (lambda i, x: frames.append(make_grid(to_uint8(x[:16]), nrow=4)) if i in keep else None)
        if args.gif
        else None
    )
    x = p_sample_loop(step, plan, (args.n, c, size, size), seed=args.seed, on_step=on_step)
    images = to_uint8(x)
    out = args.out or args.run_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"samples_{sampler['name']}"
    save_png(make_grid(images), stem.with_suffix(".png"))
    np.savez_compressed(stem.with_suffix(".npz"), images=images)
    if args.gif:
        save_gif(frames, stem.with_suffix(".gif"))
    print(
        f"{args.n} samples from step {run.step} ({run.checkpoint.name}) with {sampler['name']} "
        f"({plan.num_steps} steps) -> {stem}.png/.npz{'/.gif' if args.gif else ''}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
