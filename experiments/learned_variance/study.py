"""The learned-variance study: DDPM with fixed and with learned reverse variances
(Nichol & Dhariwal 2021), the DDPM recipe (experiment=quick_ddpm) at equal training, 3 seeds.

    python experiments/learned_variance/study.py OUT [--seeds 0,1,2] [--steps 2500]
        [--fixed DIR]   # reuse fixed runs DIR/ddpm_s<seed> (the formulations study's)

Both arms train the same network, batch, LR, EMA and conditioning for --steps steps; the
learned arm adds variance=learned (2C output channels and the hybrid loss), which costs
the same per step up to the last 1x1 convolution. Each run is scored in one process
(ddpm.api) on 1,000 samples, guided with the recipe's w = 4 in t/T (0.2, 0.8]:
- DPM-Solver++ over 20 steps, the recipe's sampler, which uses the mean alone;
- the DDPM ancestral sampler over 25 and 50 respaced steps: the fixed arm with
  sigma^2 = beta~ (small) and beta (large), the learned arm with its Sigma_theta;
- bits/dim on the first 1,000 test images (50 timesteps): fixed small and large, learned.
Rows go to OUT/study.csv; a row already there is not scored again. report.py makes the tables.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the ddpm package of this checkout
from ddpm.analysis.rows import append_csv, read_csv  # noqa: E402

PY = sys.executable
GUIDANCE, INTERVAL = 4.0, [0.2, 0.8]
METRICS = ["fd", "precision", "recall", "cond_accuracy", "class_min", "bpd"]
FIELDS = ["arm", "seed", "cell", "sampler", "steps", "variance", *METRICS, "seconds",
          "train_steps", "train_seconds"]  # fmt: skip
# arm -> (sampler, steps, sampler.variance); steps 0 is the bits/dim cell
CELLS = {
    "fixed": [("dpm_solver", 20, ""), ("ddpm", 25, "small"), ("ddpm", 25, "large"),
              ("ddpm", 50, "small"), ("ddpm", 50, "large"), ("bpd", 0, "small"),
              ("bpd", 0, "large")],
    "learned": [("dpm_solver", 20, ""), ("ddpm", 25, ""), ("ddpm", 50, ""), ("bpd", 0, "")],
}  # fmt: skip


def cell_name(sampler: str, steps: int, variance: str) -> str:
    return "-".join(str(p) for p in (sampler, steps or None, variance or None) if p)


def train(out: Path, arm: str, seed: int, steps: int) -> Path:
    run = out / f"{arm}_s{seed}"
    if (run / "summary.json").is_file():
        return run
    overrides = ["experiment=quick_ddpm", f"seed={seed}", "trainer.minutes=null",
                 f"trainer.steps={steps}", f"hydra.run.dir={run}"]  # fmt: skip
    if arm == "learned":
        overrides.append("variance=learned")
    with (out / f"{arm}_s{seed}.log").open("w") as f:
        subprocess.run([PY, "-m", "ddpm.run", *overrides], stdout=f, stderr=f, check=True)
    return run


def score(run: Path, arm: str, seed: int, table: Path) -> None:
    """Score the run's missing cells in a child process, so MindSpore loads once per run."""
    done = {(r["arm"], r["seed"], r["cell"]) for r in read_csv(table)}
    todo = [c for c in CELLS[arm] if (arm, str(seed), cell_name(*c)) not in done]
    if todo:
        spec = {"run": str(run), "arm": arm, "seed": seed, "cells": todo, "table": str(table)}
        subprocess.run([PY, __file__, "--score", json.dumps(spec)], check=True)


def score_child(spec: dict) -> None:
    import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)
    from ddpm.api import load_run
    from ddpm.evaluation.build import build_likelihood
    from ddpm.sampling.reverse_step import reverse_process

    run = load_run(spec["run"])
    summary = json.loads((Path(spec["run"]) / "summary.json").read_text())
    for sampler, steps, variance in spec["cells"]:
        keys = {"variance": variance} if variance and sampler == "ddpm" else {}
        if sampler == "bpd":
            model = run.model
            bound = build_likelihood(
                1000, 50, run.config["dataset"], model.diffusion, variance or "large"
            )
            step, _ = reverse_process(model.network, model.diffusion, run.sampler())
            m = {"bpd": bound(step, 250)["bpd"], "seconds": ""}
        else:
            m = run.evaluate(1000, sampler=sampler, steps=steps, guidance=GUIDANCE,
                             guidance_interval=INTERVAL, **keys)  # fmt: skip
        cell = cell_name(sampler, steps, variance)
        row = {"arm": spec["arm"], "seed": spec["seed"], "cell": cell, "sampler": sampler,
               "steps": steps, "variance": variance,
               "seconds": m["seconds"], "train_steps": summary["steps"],
               "train_seconds": round(summary["train_seconds"], 1)}  # fmt: skip
        row.update({k: m.get(k, "") for k in METRICS})
        append_csv(Path(spec["table"]), row, FIELDS)
        print(json.dumps(row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path, nargs="?")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=2500, help="training steps of every run")
    p.add_argument("--fixed", type=Path, help="a folder with fixed runs ddpm_s<seed> to reuse")
    p.add_argument("--score", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.score:
        return score_child(json.loads(args.score))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    table = out / "study.csv"
    for seed in map(int, args.seeds.split(",")):
        reused = args.fixed / f"ddpm_s{seed}" if args.fixed else None
        fixed = reused if reused and reused.is_dir() else train(out, "fixed", seed, args.steps)
        learned = train(out, "learned", seed, args.steps)
        score(learned, "learned", seed, table)
        score(fixed, "fixed", seed, table)


if __name__ == "__main__":
    main()
