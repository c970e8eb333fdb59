"""Choose the EMA length after training (post-hoc EMA, Karras et al. 2024, sec. 3):

    python -m ddpm.ema <run dir> [<run dir> ...] [--sigma-rel 0.02,0.05,0.1,0.2] [--n 1000]

For a run trained with trainer.posthoc_ema (e.g. [0.05,0.1]), reconstructs from its
snapshots the power-function EMA of each --sigma-rel at the last snapshot's step, saves it
as <run>/posthoc/ema_sigma<sigma_rel>.ckpt (`python -m ddpm.sample <run> --checkpoint
<that file>` samples it), and scores it with the run's sampler and the metrics of
ddpm.evaluate, beside the run's own EMA (trainer.ema_decay). Several runs (seeds of one
recipe) give means and 95% t intervals. Writes into --out (default: the first run's
posthoc folder) posthoc_ema.csv, posthoc_ema.md and, with matplotlib, posthoc_ema.png (FD
against sigma_rel). --no-eval only saves the reconstructions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
from ddpm.analysis.rows import mean_table, pyplot, write_outputs
from ddpm.analysis.stats import estimate
from ddpm.cli import float_list, non_negative_int, positive_int, run_dir, run_tool
from ddpm.config.errors import ConfigError
from ddpm.config.run_folder import RunFolder
from ddpm.training.config import MAX_SIGMA_REL
from ddpm.training.phema import save_reconstructions

SHOWN = ("fd", "precision", "recall", "cond_accuracy", "class_min")
RUN_EMA = "run EMA"  # the row of the run's own trainer.ema_decay weights


def sigma_rels(text: str) -> list[float]:
    values = float_list(text)
    if any(not 0 < v < MAX_SIGMA_REL for v in values):
        raise argparse.ArgumentTypeError(
            f"{text!r}: every sigma_rel must be in (0, {MAX_SIGMA_REL})"
        )
    return values


def score(run: Path, sigmas: Sequence[float], args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per sigma_rel, and one for the run's own EMA."""
    from ddpm.api import load_run

    paths = save_reconstructions(run, sigmas)
    rows = []
    for label, ckpt in [*zip(sigmas, paths, strict=True), (RUN_EMA, None)]:
        metrics = load_run(run, ckpt).evaluate(args.n, batch=args.batch, seed=args.seed)
        rows.append({"run": run.name, "sigma_rel": label, **{m: metrics[m] for m in SHOWN}})
        print(f"{run.name} sigma_rel={label}: " + ", ".join(f"{m} {metrics[m]:.4g}" for m in SHOWN))
    return rows


def summary_table(rows: list[dict[str, Any]], runs: int, n: int) -> str:
    lines = [
        f"Each value: the mean over {runs} run(s) of {n} samples each, +- the half-width of "
        f"its 95% t interval (none for one run). '{RUN_EMA}': the weights of trainer.ema_decay.",
        "",
        *mean_table(rows, "sigma_rel", SHOWN, "sigma_rel"),
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    """FD against sigma_rel (log axis), mean and 95% interval; the run's EMA as a line."""
    plt = pyplot(path)
    if plt is None:
        return False
    sigmas = sorted({r["sigma_rel"] for r in rows if r["sigma_rel"] != RUN_EMA})
    fd = [estimate([r["fd"] for r in rows if r["sigma_rel"] == s]) for s in sigmas]
    base = estimate([r["fd"] for r in rows if r["sigma_rel"] == RUN_EMA])
    fig, ax = plt.subplots(figsize=(6, 4))
    yerr = [e.half_width if e.has_interval else 0.0 for e in fd]
    ax.errorbar(sigmas, [e.mean for e in fd], yerr=yerr, marker="o", capsize=3, label="post-hoc")
    ax.axhline(base.mean, color="gray", linestyle="--", label=f"{RUN_EMA} (trainer.ema_decay)")
    ax.set(xscale="log", xlabel="sigma_rel", ylabel="FD")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ddpm.ema",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", type=run_dir, nargs="+", help="runs trained with trainer.posthoc_ema")
    p.add_argument("--sigma-rel", type=sigma_rels, default=[0.02, 0.05, 0.1, 0.2])
    p.add_argument("--n", type=positive_int, default=1000, help="samples per run and sigma_rel")
    p.add_argument("--batch", type=positive_int, default=250, help="samples drawn at once")
    p.add_argument("--seed", type=non_negative_int, default=1000)
    p.add_argument("--out", type=Path, help="output folder (default: the first run's posthoc/)")
    p.add_argument("--no-eval", action="store_true", help="only save the reconstructions")
    return p.parse_args(argv)


def ema(args: argparse.Namespace) -> int:
    if args.no_eval:
        for run in args.runs:
            print("\n".join(map(str, save_reconstructions(run, args.sigma_rel))))
        return 0
    out = args.out or RunFolder(args.runs[0]).posthoc
    out.mkdir(parents=True, exist_ok=True)
    rows = [row for run in args.runs for row in score(run, args.sigma_rel, args)]
    if not rows:
        raise ConfigError("nothing to score")
    write_outputs(rows, out, "posthoc_ema", summary_table(rows, len(args.runs), args.n), plot)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: ema(args))


if __name__ == "__main__":
    sys.exit(main())
