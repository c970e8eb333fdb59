"""The formulations study: DDPM, EDM and flow matching at equal training, 3 seeds each.

    python experiments/formulations/study.py OUT [--seeds 0,1,2] [--steps 2500]

Seed by seed, it trains the three formulations with the default recipe (the same network,
batch, learning rate, EMA and conditioning; only the formulation and its sampler change),
then scores each run in one process (ddpm.api, FD etc. on 1,000 samples):
- at each formulation's main sampler, every guidance scale of --scales (seed 0 only, unless
  --all-scales); the scale with the lowest FD on seed 0 is that formulation's w;
- at that w, the formulation's samplers over the step counts of SWEEPS (the largest only on
  seed 0, unless --all-steps).
Rows go to OUT/study.csv, one per (formulation, seed, sampler, steps, w); a row already
there is not scored again, so the study resumes and extends. report.py makes the tables.
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

# formulation -> the overrides it trains with (on top of the default recipe)
TRAIN = {
    "ddpm": [],
    "edm": ["formulation=edm", "sampler=heun", "sampler.steps=10"],
    "flow": ["formulation=flow", "sampler=euler", "sampler.steps=20"],
}
# formulation -> [(sampler, [steps])]; the first sampler's middle entry is the main setting
SWEEPS = {
    "ddpm": [("dpm_solver", [20, 5, 10, 40])],
    "edm": [("heun", [10, 3, 5, 20])],
    "flow": [("euler", [20, 5, 10, 40]), ("heun", [3, 5, 10, 20])],
}
METRICS = ["fd", "precision", "recall", "cond_accuracy", "class_min", "class_max", "fd_class"]
INTERVAL = [0.2, 0.8]  # the default's guidance interval, for every sampler
SECOND_ORDER = {"heun", "midpoint"}  # 2 steps - 1 network evaluations
FIELDS = [
    "formulation", "seed", "sampler", "steps", "nfe", "guidance", "fd", "precision",
    "recall", "cond_accuracy", "class_min", "class_max", "fd_class", "sample_seconds",
    "train_steps", "train_seconds",
]  # fmt: skip


def nfe(sampler: str, steps: int) -> int:
    return 2 * steps - 1 if sampler in SECOND_ORDER else steps


def key(row: dict) -> tuple:
    return (row["formulation"], str(row["seed"]), row["sampler"], str(row["steps"]),
            f"{float(row['guidance']):g}")  # fmt: skip


def train(out: Path, formulation: str, seed: int, steps: int) -> Path:
    run = out / f"{formulation}_s{seed}"
    if (run / "summary.json").is_file():
        return run
    overrides = [*TRAIN[formulation], f"seed={seed}", "trainer.minutes=null",
                 f"trainer.steps={steps}", f"hydra.run.dir={run}"]  # fmt: skip
    log = out / f"{formulation}_s{seed}.log"
    with log.open("w") as f:
        subprocess.run([PY, "-m", "ddpm.run", *overrides], stdout=f, stderr=f, check=True)
    return run


def cells(formulation: str, seed: int, w: float | None, scales: list[float], args) -> list:
    """(sampler, steps, w) to score for this run; w None: only the guidance cells."""
    sampler, steps = SWEEPS[formulation][0][0], SWEEPS[formulation][0][1][0]
    todo = [(sampler, steps, s) for s in scales] if seed == 0 or args.all_scales else []
    if w is None:
        return todo
    todo.append((sampler, steps, w))
    for name, counts in SWEEPS[formulation]:
        top = max(counts)
        todo += [(name, c, w) for c in counts if c != top or seed == 0 or args.all_steps]
    return list(dict.fromkeys(todo))


def score(run: Path, formulation: str, seed: int, todo: list, table: Path) -> None:
    """Score the cells of one run in a child process, so MindSpore loads once per run."""
    done = {key(r) for r in read_csv(table)}
    todo = [c for c in todo if (formulation, str(seed), c[0], str(c[1]), f"{c[2]:g}") not in done]
    if todo:
        spec = json.dumps({"run": str(run), "formulation": formulation, "seed": seed,
                           "cells": todo, "table": str(table)})  # fmt: skip
        subprocess.run([PY, __file__, "--score", spec], check=True)


def score_child(spec: dict) -> None:
    import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)
    from ddpm.api import load_run

    run = load_run(spec["run"])
    summary = json.loads((Path(spec["run"]) / "summary.json").read_text())
    for sampler, steps, w in spec["cells"]:
        m = run.evaluate(1000, sampler=sampler, steps=steps, guidance=w, guidance_interval=INTERVAL)
        row = {"formulation": spec["formulation"], "seed": spec["seed"], "sampler": sampler,
               "steps": steps, "nfe": nfe(sampler, steps), "guidance": w,
               "sample_seconds": m["seconds"], "train_steps": summary["steps"],
               "train_seconds": round(summary["train_seconds"], 1)}  # fmt: skip
        row.update({k: m[k] for k in METRICS})
        append_csv(Path(spec["table"]), row, FIELDS)
        print(json.dumps(row), flush=True)


def best_scale(table: Path, formulation: str, scales: list[float]) -> float | None:
    """The scale of --scales with the lowest FD on seed 0 at the main setting."""
    sampler, steps = SWEEPS[formulation][0][0], str(SWEEPS[formulation][0][1][0])
    rows = [r for r in read_csv(table) if (r["formulation"], r["seed"], r["sampler"],
            r["steps"]) == (formulation, "0", sampler, steps)]  # fmt: skip
    fd = {float(r["guidance"]): float(r["fd"]) for r in rows if float(r["guidance"]) in scales}
    return min(fd, key=fd.get) if len(fd) == len(scales) else None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path, nargs="?")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=2500, help="training steps of every run")
    p.add_argument("--formulations", default="ddpm,edm,flow")
    p.add_argument("--scales", default="2,3,4", help="guidance scales tried on seed 0")
    p.add_argument("--all-scales", action="store_true", help="try every scale on every seed")
    p.add_argument("--all-steps", action="store_true", help="the largest step counts on every seed")
    p.add_argument("--score", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.score:
        return score_child(json.loads(args.score))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    table, scales = out / "study.csv", [float(s) for s in args.scales.split(",")]
    formulations = args.formulations.split(",")
    for seed in map(int, args.seeds.split(",")):
        runs = {f: train(out, f, seed, args.steps) for f in formulations}
        for f, run in runs.items():
            score(run, f, seed, cells(f, seed, None, scales, args), table)
            w = best_scale(table, f, scales)
            score(run, f, seed, cells(f, seed, w, scales, args), table)


if __name__ == "__main__":
    main()
