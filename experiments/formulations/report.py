"""Tables and a plot from the formulations study's rows (study.py's study.csv).

    python experiments/formulations/report.py experiments/formulations/study.csv

Prints Markdown tables (mean +- the 95% t half-width over seeds, Welch's p against the DDPM
default) and writes fd_vs_nfe.png beside the CSV.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from ddpm.analysis.rows import format_estimate
from ddpm.analysis.stats import estimate, welch_p

BASELINE = ("ddpm", "dpm_solver", 20)  # today's default: DPM-Solver++(2M), 20 steps
SHOWN = ["fd", "precision", "recall", "cond_accuracy", "class_min", "class_max"]


def read(path: Path) -> list[dict]:
    with path.open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["steps"], row["nfe"], row["seed"] = int(row["steps"]), int(row["nfe"]), int(row["seed"])
        for k in [*SHOWN, "guidance", "train_seconds", "sample_seconds", "fd_class"]:
            row[k] = float(row[k])
    return rows


def chosen_scale(rows: list[dict]) -> dict[str, float]:
    """Each formulation's w: the one scored at every seed (the seed-0 winner)."""
    seeds = defaultdict(set)
    for r in rows:
        seeds[(r["formulation"], r["guidance"])].add(r["seed"])
    best = {}
    for (form, w), s in seeds.items():
        if form not in best or len(s) > len(seeds[(form, best[form])]):
            best[form] = w
    return best


def cells(rows: list[dict]) -> dict[tuple, list[dict]]:
    """(formulation, sampler, steps) -> the rows at the formulation's chosen w."""
    w = chosen_scale(rows)
    out = defaultdict(list)
    for r in rows:
        if r["guidance"] == w[r["formulation"]]:
            out[(r["formulation"], r["sampler"], r["steps"])].append(r)
    return out


def guidance_table(rows: list[dict]) -> str:
    lines = ["| formulation | sampler, steps | w | FD | precision | recall | cond. accuracy |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    main = {}
    for r in rows:
        main.setdefault(r["formulation"], (r["sampler"], r["steps"]))
    for r in rows:
        if r["seed"] == 0 and (r["sampler"], r["steps"]) == main[r["formulation"]]:
            lines.append(
                f"| {r['formulation']} | {r['sampler']} {r['steps']} | {r['guidance']:g} | "
                f"{r['fd']:.1f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                f"{r['cond_accuracy']:.3f} |"
            )
    return "\n".join(lines)


def main_table(table: dict[tuple, list[dict]], min_seeds: int) -> str:
    base = [r["fd"] for r in table[BASELINE]]
    head = (
        "| formulation | sampler, steps | NFE | seeds | "
        + " | ".join(SHOWN)
        + " | p (FD vs default) |"
    )
    lines = [head, "|" + "---|" * (len(SHOWN) + 5)]
    for (form, sampler, steps), rs in sorted(
        table.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[1][0]["nfe"])
    ):
        if len(rs) < min_seeds:
            continue
        p = (
            welch_p([r["fd"] for r in rs], base)
            if (form, sampler, steps) != BASELINE
            else float("nan")
        )
        stats = " | ".join(
            format_estimate([r[k] for r in rs], 1 if k == "fd" else 3) for k in SHOWN
        )
        lines.append(
            f"| {form} | {sampler} {steps} | {rs[0]['nfe']} | {len(rs)} | {stats} | "
            f"{'' if p != p else f'{p:.2g}'} |"
        )
    return "\n".join(lines)


def training_table(rows: list[dict]) -> str:
    seconds = defaultdict(dict)
    for r in rows:
        seconds[r["formulation"]][r["seed"]] = r["train_seconds"]
    lines = ["| formulation | training seconds per seed (2,500 steps) | steps/s |", "|---|---|---|"]
    for form, by_seed in seconds.items():
        s = [by_seed[k] for k in sorted(by_seed)]
        rate = [2500 / x for x in s]
        lines.append(
            f"| {form} | {', '.join(f'{x:.0f}' for x in s)} | {format_estimate(rate, 2)} |"
        )
    return "\n".join(lines)


def plot(table: dict[tuple, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = defaultdict(list)
    for (form, sampler, _), rs in table.items():
        est = estimate([r["fd"] for r in rs])
        lines[(form, sampler)].append((rs[0]["nfe"], est.mean, est.half_width, est.n))
    fig, ax = plt.subplots(figsize=(6, 4))
    for (form, sampler), pts in sorted(lines.items()):
        pts.sort()
        x, y, hw, _ = zip(*pts, strict=True)
        yerr = [h if h == h else 0 for h in hw]
        ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=f"{form}, {sampler}")
    title = "FD against NFE, 3 seeds (40/39 NFE: seed 0)"
    ax.set(xscale="log", yscale="log", xlabel="network evaluations per sample")
    ax.set(ylabel="FD (1,000 samples)", title=title)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    args = parser.parse_args()
    rows = read(args.csv)
    table = cells(rows)
    print("## Guidance scale (seed 0)\n\n" + guidance_table(rows))
    print("\n## Every cell at each formulation's w\n\n" + main_table(table, 1))
    print("\n## Training time\n\n" + training_table(rows))
    plot(table, args.csv.with_name("fd_vs_nfe.png"))


if __name__ == "__main__":
    main()
