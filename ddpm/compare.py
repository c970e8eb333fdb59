"""Compare a sweep: `python -m ddpm.compare <sweep dir> [--rank fd] [--mixed-n]`.

Runs that differ only by seed form a group. The columns are the config keys that vary
across the sweep (whatever they are), then each metric as the mean over seeds with the
half-width of its 95% Student-t interval. A value marked * differs from the best group's
with statistical support: Welch's t-test, two-sided p < 0.05. A group of one seed has no
interval, and says so. Groups are ranked by --rank (default: fd where runs have it, else
final_loss). FD depends on the number of samples, so runs evaluated at different N are
not ranked by FD unless --mixed-n; fd_inf, FD extrapolated to infinite N, compares them.

Writes compare.md, compare.csv (a row per group) and, with matplotlib installed
(`pip install -e .[plots]`), compare.png: the logged metrics against training step and
against wall-clock minutes, a line per group and a band over its seeds.
"""

from __future__ import annotations

import argparse
import sys

from ddpm.analysis.table import OUTCOMES, compare_sweep
from ddpm.cli import folder, run_tool
from ddpm.evaluation.metrics import METRICS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ddpm.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sweep_dir", type=folder, help="a sweep's folder (multirun/<date>/<time>)")
    p.add_argument("--rank", choices=[*METRICS, *OUTCOMES], help="the metric that ranks groups")
    p.add_argument("--mixed-n", action="store_true", help="rank by FD across sample counts")
    return p.parse_args(argv)


def compare(args: argparse.Namespace) -> int:
    result = compare_sweep(args.sweep_dir, args.rank, args.mixed_n)
    print(result.report + "\nwritten: " + ", ".join(map(str, result.written)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: compare(args))


if __name__ == "__main__":
    sys.exit(main())
