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
from pathlib import Path

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
import numpy as np

from ddpm.api import load_run
from ddpm.cli import (
    add_sampler_flags,
    existing_file,
    non_negative_int,
    positive_int,
    run_dir,
    run_tool,
    sampler_flags,
)
from ddpm.data.images import make_grid, save_gif, save_png, to_uint8
from ddpm.sampling.options import check_class_request

GIF_FRAMES, GIF_IMAGES = 40, 16


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


def sample(args: argparse.Namespace) -> int:
    run = load_run(args.run_dir, args.checkpoint)
    sampler = run.sampler(args.sampler, **sampler_flags(args))  # the flags, before loading
    check_class_request(run.cfg, args.classes, args.per_class)
    frames: list[np.ndarray] = []
    steps = sampler.shared.steps or run.config["schedule"].shared.timesteps
    keep = set(np.linspace(0, steps - 1, min(steps, GIF_FRAMES)).round().astype(int))

    def on_step(i: int, x: np.ndarray) -> None:
        if i in keep:
            frames.append(make_grid(to_uint8(x[:GIF_IMAGES]), nrow=4))

    drawn = run.sample(
        args.n,
        classes=args.classes,
        per_class=args.per_class,
        sampler=sampler,
        seed=args.seed,
        on_step=on_step if args.gif else None,
    )
    out = args.out or args.run_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"samples_{sampler.name}"
    save_png(make_grid(drawn.images, nrow=drawn.columns or None), stem.with_suffix(".png"))
    arrays = {"images": drawn.images}
    if drawn.labels is not None:
        arrays["labels"] = drawn.labels
    np.savez_compressed(stem.with_suffix(".npz"), **arrays)
    if args.gif:
        save_gif(frames, stem.with_suffix(".gif"))
    what = ""
    if drawn.labels is not None:
        names = ", ".join(run.classes[i] for i in sorted(set(drawn.labels.tolist())))
        what = f" of {names} (guidance {sampler.shared.guidance})"
    print(
        f"{len(drawn.images)} samples{what} from step {run.step} ({run.model.checkpoint.name}) "
        f"with {sampler.name} ({drawn.steps} steps) -> {stem}.png/.npz"
        f"{'/.gif' if args.gif else ''}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: sample(args))


if __name__ == "__main__":
    sys.exit(main())
