"""bf16 products in the convolutions against float32, at equal training steps.

    python experiments/bf16/study.py OUT [--seeds 0,1,2] [--steps 3000] [--experiment NAME]

Seed by seed, it trains the default recipe (or experiment=NAME) twice, with
runtime.conv_precision=float32 and =bfloat16 and nothing else changed, for --steps steps
each, then scores each run in a child process at the recipe's sampler (ddpm.api's
evaluate: FD etc. on 1,000 samples, drawn with the run's own precision). Rows go to
OUT/study.csv; a run or row already there is kept, so the study resumes. report.py makes
the table.
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
PRECISIONS = ["float32", "bfloat16"]
METRICS = ["fd", "precision", "recall", "cond_accuracy", "class_min", "class_max"]
FIELDS = ["precision_key", "seed", *METRICS, "sample_seconds", "train_steps", "train_seconds"]


def train(out: Path, precision: str, seed: int, args: argparse.Namespace) -> Path:
    run = out / f"{precision}_s{seed}"
    if (run / "summary.json").is_file():
        return run
    overrides = [f"runtime.conv_precision={precision}", f"seed={seed}", "trainer.minutes=null",
                 f"trainer.steps={args.steps}", f"hydra.run.dir={run}"]  # fmt: skip
    overrides += [f"experiment={args.experiment}"] if args.experiment else []
    with (out / f"{precision}_s{seed}.log").open("w") as log:
        subprocess.run([PY, "-m", "ddpm.run", *overrides], stdout=log, stderr=log, check=True)
    return run


def score_child(spec: dict) -> None:
    import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)
    from ddpm.api import load_run

    m = load_run(spec["run"]).evaluate(1000)
    summary = json.loads((Path(spec["run"]) / "summary.json").read_text())
    row = {"precision_key": spec["precision"], "seed": spec["seed"],
           "sample_seconds": m["seconds"], "train_steps": summary["steps"],
           "train_seconds": round(summary["train_seconds"], 1)}  # fmt: skip
    row.update({k: m.get(k, "") for k in METRICS})  # an unconditional run: no class figures
    append_csv(Path(spec["table"]), row, FIELDS)
    print(json.dumps(row), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path, nargs="?")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--steps", type=int, default=3000, help="training steps of every run")
    p.add_argument("--experiment", help="a recipe of conf/experiment (default: the default's)")
    p.add_argument("--score", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.score:
        return score_child(json.loads(args.score))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    table = out / "study.csv"
    for seed in map(int, args.seeds.split(",")):
        for precision in PRECISIONS:
            run = train(out, precision, seed, args)
            if (precision, str(seed)) in {(r["precision_key"], r["seed"]) for r in read_csv(table)}:
                continue
            spec = {"run": str(run), "precision": precision, "seed": seed, "table": str(table)}
            subprocess.run([PY, __file__, "--score", json.dumps(spec)], check=True)


if __name__ == "__main__":
    main()
