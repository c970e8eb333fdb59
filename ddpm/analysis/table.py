"""A sweep as one table: groups of seeds, ranked, with intervals and Welch tests.

`compare_sweep` reads a sweep's runs (ddpm.analysis.sweep), groups those that differ only
by seed, ranks the groups by a metric and writes compare.md, compare.csv and, with
matplotlib, compare.png; `python -m ddpm.compare` prints what it returns.
"""

from __future__ import annotations

import csv
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ddpm.analysis.stats import ALPHA, Estimate, estimate, welch_p
from ddpm.analysis.sweep import Group, RunRecord, group_by_seed, label, read_sweep, varying_keys
from ddpm.config.errors import ConfigError
from ddpm.evaluation.metrics import METRICS

OUTCOMES = ("steps", "train_s")  # per-run figures shown beside the metrics, not tested
LEGEND = (
    "Each value is the mean over a group's seeds +- the half-width of its 95% Student-t "
    f"interval. * marks a group that differs from the best one (bold) with Welch's t-test, "
    f"two-sided p < {ALPHA}; a group of one seed has no interval and no test."
)


def rank_metric(records: list[RunRecord], asked: str | None, mixed_n: bool) -> str:
    """The metric that ranks the groups; FD only between runs of one sample count."""
    has_fd = any(math.isfinite(r.metrics["fd"]) for r in records)
    name = asked or ("fd" if has_fd else "final_loss")
    if name == "fd" and not mixed_n:
        counts = sorted({r.extra["eval_n"] for r in records if math.isfinite(r.metrics["fd"])})
        if len(counts) > 1:
            raise ConfigError(
                f"the runs' FD comes from different sample counts ({counts}); FD depends on "
                "N, so it does not rank them. Rank by --rank fd_inf (extrapolated to "
                "infinite N), or pass --mixed-n to rank by FD anyway."
            )
    return name


def lower_is_better(name: str) -> bool:
    return METRICS[name].lower_is_better if name in METRICS else False


def ranked(groups: list[Group], metric: str) -> list[Group]:
    sign = 1.0 if lower_is_better(metric) else -1.0

    def key(group: Group) -> tuple[bool, float]:
        mean = estimate(group.values(metric)).mean
        return (not math.isfinite(mean), sign * mean if math.isfinite(mean) else 0.0)

    return sorted(groups, key=key)


def shown_metrics(groups: list[Group]) -> list[str]:
    names = [*METRICS, *OUTCOMES]
    return [m for m in names if any(math.isfinite(v) for g in groups for v in g.values(m))]


def significance(groups: list[Group], metric: str) -> tuple[Group | None, dict[int, float]]:
    """The best group for `metric` and each other group's Welch p against it."""
    scored = [g for g in groups if math.isfinite(estimate(g.values(metric)).mean)]
    if not scored:
        return None, {}
    best = ranked(scored, metric)[0]
    pvalues = {id(g): welch_p(best.values(metric), g.values(metric)) for g in scored}
    pvalues.pop(id(best))
    return best, pvalues


ONE_SEED = "Every group has one seed: no intervals and no tests."


def cell(est: Estimate, p: float, best: bool, one_seed_each: bool = False) -> str:
    if est.n == 0:
        return "-"
    text = f"{est.mean:.4g}"
    if est.has_interval:
        text += f" ± {est.half_width:.2g}"
    elif not one_seed_each:  # said once, in the legend, when it holds for every group
        text += " (n=1, no interval)"
    text += " *" if p < ALPHA else ""
    return f"**{text}**" if best else text


def table(
    groups: list[Group], keys: list[str], metrics: list[str], one_seed_each: bool
) -> tuple[str, list[dict]]:
    """The markdown table and the CSV rows, one per group."""
    header = [*(label(k) for k in keys), "seeds", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows = []
    tests = {m: significance(groups, m) if m in METRICS else (None, {}) for m in metrics}
    for group in groups:
        cells = [str(group.choice[k]) for k in keys] + [",".join(map(str, group.seeds))]
        row: dict[str, Any] = {label(k): group.choice[k] for k in keys}
        row["seeds"] = " ".join(map(str, group.seeds))
        for m in metrics:
            best, pvalues = tests[m]
            est, p = estimate(group.values(m)), pvalues.get(id(group), math.nan)
            cells.append(cell(est, p, group is best, one_seed_each))
            row.update({m: est.mean, f"{m}_ci95": est.half_width, f"{m}_n": est.n})
            row[f"{m}_p_vs_best"] = p
        lines.append("| " + " | ".join(cells) + " |")
        rows.append(row)
    return "\n".join(lines) + "\n", rows


@dataclass
class Comparison:
    report: str  # compare.md's text
    written: list[Path]


def compare_sweep(sweep_dir: Path, rank: str | None = None, mixed_n: bool = False) -> Comparison:
    """Rank the sweep's seed groups by `rank` (default: fd where runs have it, else
    final_loss) and write its tables and plot into `sweep_dir`."""
    records = read_sweep(sweep_dir)
    if not records:
        raise ConfigError(
            f"{sweep_dir} is not a sweep: no runs (*/.hydra/config.yaml) under it "
            "(python -m ddpm.run -m ... writes them)"
        )
    done = [r for r in records if r.status == "ok"]
    keys = varying_keys(done or records)
    groups = group_by_seed(done, keys)
    metric = rank_metric(done, rank, mixed_n)
    groups = ranked(groups, metric)
    one_seed = all(len(g.runs) == 1 for g in groups)
    text, rows = table(groups, keys, shown_metrics(groups), one_seed)
    report = f"Ranked by {metric}. {ONE_SEED if one_seed else LEGEND}\n\n{text}"
    skipped = [r for r in records if r.status != "ok"]
    if skipped:
        report += "\nNot counted:\n" + "".join(f"- {r.name}: {r.status}\n" for r in skipped)
    (sweep_dir / "compare.md").write_text(report)
    with open(sweep_dir / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["run"])
        writer.writeheader()
        writer.writerows(rows)
    written = [sweep_dir / "compare.md", sweep_dir / "compare.csv"]
    written += plot_if_possible(groups, keys, sweep_dir / "compare.png")
    return Comparison(report, written)


def plot_if_possible(groups: list[Group], keys: list[str], path: Path) -> list[Path]:
    try:
        from ddpm.analysis.plots import plot_curves
    except ImportError as err:
        print(f"(no compare.png: {err}; pip install -e .[plots])", file=sys.stderr)
        return []
    return [path] if plot_curves(groups, keys, path) else []
