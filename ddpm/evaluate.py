"""Evaluate a finished run: `python -m ddpm.evaluate <run dir> [--n 10000] [--bpd-n 1000]`.

Draws n samples from the run's EMA weights with the run's sampler (or --sampler and its
flags, as in ddpm.sample), computes FD, classifier IS, precision/recall (k=3) and the
class shares against the test set in the cached feature space and, with --bpd-n, the
negative ELBO in bits/dim of the first bpd-n test images (50 network passes over each, so
it takes longer than the samples); prints them and writes <run dir>/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
from ddpm.build import build_likelihood, likelihood_variance, resolve
from ddpm.cli import non_negative_int, positive_int, run_dir, run_tool
from ddpm.metrics import METRICS
from ddpm.quality import feature_net
from ddpm.quality.evaluator import Evaluator, draw
from ddpm.reverse_step import ReverseStep
from ddpm.runs import load_config
from ddpm.sample import add_sampler_flags, load_run, sampler_option
from ddpm.samplers import describe, make_plan


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ddpm.evaluate", description=__doc__)
    p.add_argument("run_dir", type=run_dir)
    p.add_argument("--n", type=non_negative_int, default=10_000, help="number of samples")
    p.add_argument("--batch", type=positive_int, default=250, help="samples drawn at once")
    add_sampler_flags(p)
    p.add_argument("--seed", type=non_negative_int, default=1000)
    p.add_argument(
        "--bpd-n", type=non_negative_int, default=0, help="test images for bits/dim (0: none)"
    )
    p.add_argument(
        "--bpd-timesteps", type=non_negative_int, default=50, help="timesteps of T (0: all)"
    )
    return p.parse_args(argv)


def evaluate(args: argparse.Namespace) -> int:
    sampler = sampler_option(load_config(args.run_dir), args)  # the flags, before any loading
    loaded = load_run(args.run_dir)
    run = resolve(loaded.cfg)
    dataset, diffusion = run["dataset"], loaded.diffusion
    channels, size = dataset.shared.channels, dataset.shared.image_size
    space = feature_net.load(dataset.name, channels, size) if args.n else None
    likelihood = build_likelihood(
        args.bpd_n,
        args.bpd_timesteps or None,
        dataset,
        diffusion,
        likelihood_variance(run["sampler"]),
    )
    step = ReverseStep(loaded.network, diffusion.objective, sampler.shared.clip_denoised)
    start, metrics = time.perf_counter(), {}
    if space is not None:
        batch = min(args.batch, args.n)
        samples = draw(
            step, make_plan(sampler, diffusion), args.n, (channels, size, size), batch, args.seed
        )
        metrics.update(Evaluator(space).metrics(samples))
    if likelihood is not None:
        metrics.update(likelihood(step, min(args.batch, args.bpd_n)))
    metrics.update(
        step=loaded.step,
        sampler=describe(sampler),
        seconds=round(time.perf_counter() - start, 1),
    )
    (args.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for name, metric in METRICS.items():
        if name in metrics:
            print(f"{name:>10} {metrics[name]:.4g}  ({metric.description})")
    print(json.dumps(metrics))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: evaluate(args))


if __name__ == "__main__":
    sys.exit(main())
