"""Evaluate a finished run: `python -m ddpm.evaluate <run dir> [--n 10000] [--bpd-n 1000]`.

Draws n samples from the run's EMA weights with the run's sampler (or --sampler and its
flags, as in ddpm.sample), computes FD, classifier IS, precision/recall (k=3) and the
class shares against the test set in the cached feature space (a class-conditional model
draws every class in turn, and adds the conditional accuracy and per-class FD) and, with
--bpd-n, the negative ELBO in bits/dim of the first bpd-n test images (50 network passes
over each, so it takes longer than the samples); prints them and writes
<run dir>/metrics.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
from ddpm.build import build_evaluator, build_likelihood, likelihood_variance, resolve
from ddpm.cli import non_negative_int, positive_int, run_dir, run_tool
from ddpm.metrics import METRICS
from ddpm.quality.evaluator import Evaluator
from ddpm.registry import Option
from ddpm.runs import load_config
from ddpm.sample import LoadedRun, add_sampler_flags, load_run, sampler_option
from ddpm.samplers import describe


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


def sample_metrics(
    loaded: LoadedRun, sampler: Option, evaluator: Evaluator, n: int, batch: int, seed: int
) -> dict[str, Any]:
    """The sample metrics of n samples drawn with `sampler` (a conditional model draws every
    class in turn), in batches of `batch` from seed `seed` on."""
    size = loaded.cfg.dataset.image_size
    shape = (loaded.cfg.dataset.channels, size, size)
    step, plan = loaded.sampling(sampler)
    return evaluator.score(step, plan, n, shape, min(batch, n), seed, len(loaded.classes))


def evaluate(args: argparse.Namespace) -> int:
    sampler = sampler_option(load_config(args.run_dir), args)  # the flags, before any loading
    loaded = load_run(args.run_dir)
    run = resolve(loaded.cfg)
    dataset, diffusion = run["dataset"], loaded.diffusion
    evaluator = build_evaluator(args.n, dataset, conditional=bool(loaded.classes))
    likelihood = build_likelihood(
        args.bpd_n,
        args.bpd_timesteps or None,
        dataset,
        diffusion,
        likelihood_variance(run["sampler"]),
    )
    start, metrics = time.perf_counter(), {}
    if evaluator is not None:
        metrics.update(sample_metrics(loaded, sampler, evaluator, args.n, args.batch, args.seed))
    if likelihood is not None:
        step, _ = loaded.sampling(sampler)
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
