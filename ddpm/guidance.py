"""The guidance trade-off of class-conditional runs (Ho & Salimans 2022, fig. 2):

    python -m ddpm.guidance <run dir> [<run dir> ...] [--scales 0,0.5,1,2,4] [--n 1000]

Scores each run (typically the seeds of one recipe) at each guidance scale w with the
samples and metrics of ddpm.evaluate: FD, precision, recall, the conditional accuracy and
per-class FD. Guidance only changes sampling, so every scale sees the same trained weights.
Writes into --out (default: the first run's parent folder) guidance.csv (a row per run and
scale), guidance.md (the mean over runs +- the half-width of its 95% t interval, per scale)
and, with matplotlib, guidance.png: FD against conditional accuracy as w grows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
from ddpm.analysis.rows import mean_table, pyplot, write_outputs
from ddpm.analysis.stats import estimate
from ddpm.api import load_run
from ddpm.cli import (
    add_sampler_flags,
    float_list,
    non_negative_int,
    positive_int,
    run_dir,
    run_tool,
    sampler_flags,
)
from ddpm.config.errors import ConfigError
from ddpm.config.groups import saved_conditioning
from ddpm.diffusion.conditioning import is_conditional
from ddpm.diffusion.samplers import describe

SHOWN = ("fd", "cond_accuracy", "fd_class", "precision", "recall", "is", "class_min")


def scales(text: str) -> list[float]:
    values = float_list(text)
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every scale must be >= 0")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ddpm.guidance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", type=run_dir, nargs="+", help="class-conditional run folders")
    p.add_argument("--scales", type=scales, default=[0.0, 0.5, 1.0, 2.0, 4.0])
    p.add_argument("--n", type=positive_int, default=1000, help="samples per run and scale")
    p.add_argument("--batch", type=positive_int, default=250, help="samples drawn at once")
    p.add_argument("--seed", type=non_negative_int, default=1000)
    p.add_argument("--out", type=Path, help="output folder (default: the first run's parent)")
    add_sampler_flags(p)
    return p.parse_args(argv)


def score_run(path: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row of metrics per guidance scale for the run at `path`."""
    run = load_run(path)
    if not is_conditional(saved_conditioning(run.cfg)):
        raise ConfigError(f"{path} is not a class-conditional run (conditioning=class)")
    flags = sampler_flags(args)
    samplers = [run.sampler(args.sampler, **{**flags, "guidance": w}) for w in args.scales]
    rows = []
    for w, sampler in zip(args.scales, samplers, strict=True):
        metrics = run.evaluate(args.n, batch=args.batch, seed=args.seed, sampler=sampler)
        row = {"run": path.name, "guidance": w, "sampler": describe(sampler)}
        rows.append({**row, **{m: metrics[m] for m in SHOWN}})
        print(f"{path.name} w={w:g}: " + ", ".join(f"{m} {metrics[m]:.4g}" for m in SHOWN))
    return rows


def summary_table(rows: list[dict[str, Any]], runs: int, n: int) -> str:
    lines = [
        f"Each value: the mean over {runs} run(s) of {n} samples each, +- the half-width of "
        "its 95% t interval (none for one run). Sampler at the last scale: "
        f"{rows[-1]['sampler']}.",
        "",
        *mean_table(sorted(rows, key=lambda r: r["guidance"]), "guidance", SHOWN, "guidance w"),
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """FD (x) against conditional accuracy (y), mean and 95% intervals, one point per w."""
    plt = pyplot(path)
    if plt is None:
        return False
    ws = sorted({r["guidance"] for r in rows})
    fd = [estimate([r["fd"] for r in rows if r["guidance"] == w]) for w in ws]
    acc = [estimate([r["cond_accuracy"] for r in rows if r["guidance"] == w]) for w in ws]
    err = lambda es: [e.half_width if e.has_interval else 0.0 for e in es]  # noqa: E731
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.errorbar(
        [e.mean for e in fd], [e.mean for e in acc], xerr=err(fd), yerr=err(acc), marker="o"
    )
    for w, f, a in zip(ws, fd, acc, strict=True):
        ax.annotate(f"w={w:g}", (f.mean, a.mean), textcoords="offset points", xytext=(6, -10))
    ax.set(xlabel="FD to the test set (lower: closer, more varied)", ylabel="conditional accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def guidance(args: argparse.Namespace) -> int:
    if args.guidance is not None:
        raise ConfigError("ddpm.guidance takes its scales from --scales, not --guidance")
    out = args.out or args.runs[0].resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for path in args.runs for row in score_run(path, args)]
    write_outputs(rows, out, "guidance", summary_table(rows, len(args.runs), args.n), plot)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: guidance(args))


if __name__ == "__main__":
    sys.exit(main())
