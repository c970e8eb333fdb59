"""Tables from the learned-variance study's rows (study.py's study.csv).

    python experiments/learned_variance/report.py experiments/learned_variance/study.csv

Prints Markdown: each setting's fixed and learned values (mean +- the 95% t half-width over
seeds), the learned - fixed difference per seed, and the paired t-test's two-sided p.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from scipy import stats

from ddpm.analysis.rows import format_estimate

# (setting, the fixed arm's cell, the learned arm's cell)
SAMPLE_ROWS = [
    ("DPM-Solver++ 20 (mean only)", "dpm_solver-20", "dpm_solver-20"),
    ("DDPM 25, fixed β̃ vs learned", "ddpm-25-small", "ddpm-25"),
    ("DDPM 25, fixed β vs learned", "ddpm-25-large", "ddpm-25"),
    ("DDPM 50, fixed β̃ vs learned", "ddpm-50-small", "ddpm-50"),
    ("DDPM 50, fixed β vs learned", "ddpm-50-large", "ddpm-50"),
]
BPD_ROWS = [("fixed β̃ vs learned", "bpd-small", "bpd"), ("fixed β vs learned", "bpd-large", "bpd")]


def read(path: Path) -> dict[tuple[str, str], dict[int, dict]]:
    """(arm, cell) -> seed -> row."""
    out: dict[tuple[str, str], dict[int, dict]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            out.setdefault((row["arm"], row["cell"]), {})[int(row["seed"])] = row
    return out


def paired(rows, fixed: str, learned: str, metric: str) -> tuple[list[float], list[float]]:
    a, b = rows.get(("fixed", fixed), {}), rows.get(("learned", learned), {})
    seeds = sorted(set(a) & set(b))
    return [float(a[s][metric]) for s in seeds], [float(b[s][metric]) for s in seeds]


def compare(rows, setting: str, fixed: str, learned: str, metric: str, digits: int) -> str:
    x, y = paired(rows, fixed, learned, metric)
    if not x:
        return f"| {setting} | | | | |"
    diffs = ", ".join(f"{v - u:+.{digits}f}" for u, v in zip(x, y, strict=True))
    p = stats.ttest_rel(y, x).pvalue if len(x) > 1 else math.nan
    fixed_value, learned_value = format_estimate(x, digits), format_estimate(y, digits)
    return f"| {setting} | {fixed_value} | {learned_value} | {diffs} | {p:.2g} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("csv", type=Path)
    rows = read(parser.parse_args().csv)
    head = "| {} | fixed | learned | learned − fixed, per seed | paired p |\n|---|---|---|---|---|"
    print("FD on 1,000 samples:\n")
    print(head.format("sampler"))
    for setting, fixed, learned in SAMPLE_ROWS:
        print(compare(rows, setting, fixed, learned, "fd", 2))
    print("\nRecall:\n")
    print(head.format("sampler"))
    for setting, fixed, learned in SAMPLE_ROWS:
        print(compare(rows, setting, fixed, learned, "recall", 3))
    print("\nBits/dim, the first 1,000 test images:\n")
    print(head.format("variance"))
    for setting, fixed, learned in BPD_ROWS:
        print(compare(rows, setting, fixed, learned, "bpd", 3))
    for arm in ("fixed", "learned"):
        runs = sorted(rows.get((arm, "dpm_solver-20"), {}).items())
        seconds = ", ".join(f"s{s}: {r['train_seconds']} s" for s, r in runs)
        print(f"\n{arm}: {runs[0][1]['train_steps'] if runs else '?'} steps in {seconds}")


if __name__ == "__main__":
    main()
