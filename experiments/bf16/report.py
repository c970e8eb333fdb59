"""The bf16 study's table (study.py's study.csv).

    python experiments/bf16/report.py experiments/bf16/study.csv

Prints a Markdown table, one row per precision: each metric's mean ± the 95% t half-width
over seeds, the training rate, and Welch's p of each metric against float32; then the
per-seed differences (bf16 - float32) of FD, which pair the two runs of a seed.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from ddpm.analysis.rows import format_estimate
from ddpm.analysis.stats import welch_p

SHOWN = ["fd", "precision", "recall", "cond_accuracy", "class_min", "class_max"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("csv", type=Path)
    rows = list(csv.DictReader(p.parse_args().csv.open()))
    by = {k: [r for r in rows if r["precision_key"] == k] for k in ("float32", "bfloat16")}
    shown = [m for m in SHOWN if all(r[m] != "" for r in rows)]  # unconditional: no class ones
    print("| precision | " + " | ".join(shown) + " | steps/s in training |")
    print("|---" * (len(shown) + 2) + "|")
    for name, group in by.items():
        cells = [format_estimate([float(r[m]) for r in group], 3) for m in shown]
        rate = [float(r["train_steps"]) / float(r["train_seconds"]) for r in group]
        print(f"| {name} | " + " | ".join(cells) + f" | {format_estimate(rate, 2)} |")
    ps = [welch_p(*([float(r[m]) for r in by[k]] for k in by)) for m in shown]
    print("| Welch p | " + " | ".join(f"{v:.2f}" for v in ps) + " | |")
    fd = {k: {r["seed"]: float(r["fd"]) for r in group} for k, group in by.items()}
    diffs = [
        fd["bfloat16"][s] - fd["float32"][s] for s in sorted(fd["float32"]) if s in fd["bfloat16"]
    ]
    print("\nFD, bf16 - float32, seed by seed: " + ", ".join(f"{d:+.2f}" for d in diffs))


if __name__ == "__main__":
    main()
