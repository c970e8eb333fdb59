"""Evaluate a finished run: `python -m ddpm.evaluate <run dir> [--n 10000] [--bpd-n 1000]`.

Draws n samples from the run's EMA weights (DDIM by default), computes FD, classifier IS,
precision/recall (k=3) and the class histogram against the test set in the cached
feature space, and the negative ELBO in bits/dim of the first bpd-n test images; prints
them and writes <run dir>/metrics.json. --n 0 or --bpd-n 0 skips either part.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
from ddpm.build import build_likelihood, build_plan, section
from ddpm.checkpoint import CheckpointError
from ddpm.data.formats import DatasetError
from ddpm.quality import feature_net
from ddpm.quality.evaluator import Evaluator, draw
from ddpm.reverse_step import ReverseStep
from ddpm.sample import load_run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddpm.evaluate", description=__doc__)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--n", type=int, default=10_000, help="number of samples")
    p.add_argument("--batch", type=int, default=250, help="samples drawn at once")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--eta", type=float, default=1.0, help="DDIM eta")
    p.add_argument("--seed", type=int, default=1000)
    p.add_argument("--bpd-n", type=int, default=1000, help="test images for bits/dim")
    p.add_argument("--bpd-timesteps", type=int, default=50, help="timesteps of T (0: all)")
    args = p.parse_args(argv)
    try:
        run = load_run(args.run_dir)
        ds = run.cfg.dataset
        space = feature_net.load(ds.name, ds.channels, ds.image_size) if args.n else None
        trainer = {"bpd_n": args.bpd_n, "bpd_timesteps": args.bpd_timesteps or None}
        variance = run.cfg.sampler.get("variance", "large")
        likelihood = build_likelihood(trainer, section(run.cfg, "dataset"), run.diffusion, variance)
    except (CheckpointError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    step = ReverseStep(run.network, run.diffusion.objective, True)
    start, metrics = time.perf_counter(), {}
    if space is not None:
        batch = min(args.batch, args.n)
        plan = build_plan({"name": "ddim", "steps": args.steps, "eta": args.eta}, run.diffusion)
        shape = (ds.channels, ds.image_size, ds.image_size)
        metrics.update(Evaluator(space).metrics(draw(step, plan, args.n, shape, batch, args.seed)))
    if likelihood is not None:
        metrics.update(likelihood(step, min(args.batch, args.bpd_n)))
    metrics.update(
        step=run.step,
        sampler=f"ddim{args.steps}_eta{args.eta}",
        seconds=round(time.perf_counter() - start, 1),
    )
    (args.run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
