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

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
from ddpm.api import load_run
from ddpm.cli import (
    add_sampler_flags,
    non_negative_int,
    positive_int,
    run_dir,
    run_tool,
    sampler_flags,
)
from ddpm.evaluation.metrics import METRICS


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
    run = load_run(args.run_dir)
    sampler = run.sampler(args.sampler, **sampler_flags(args))  # the flags, before loading
    metrics = run.evaluate(
        args.n,
        batch=args.batch,
        seed=args.seed,
        bpd_n=args.bpd_n,
        bpd_timesteps=args.bpd_timesteps or None,
        sampler=sampler,
        save=True,
    )
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
