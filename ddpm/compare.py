"""Tabulate a sweep: `python -m ddpm.compare <sweep dir>`.

One row per run: its config-group choices, every metric of ddpm.metrics (from summary.json,
and metrics.json when `ddpm.evaluate` ran) and wall time. Sorted by FD when present, else
by final loss. Also writes compare.md and compare.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from ddpm.cli import folder, load_config, run_tool
from ddpm.errors import ConfigError
from ddpm.metrics import METRICS

GROUPS = ("schedule", "block", "attention", "loss", "objective", "sampler")
NUMBERS = (*METRICS, "wall_s")


def read_run(run_dir: Path) -> dict[str, Any]:
    """One run's row; missing figures are NaN, a failed run says so."""
    cfg = load_config(run_dir)
    row: dict[str, Any] = {"run": run_dir.name, **{g: cfg[g].name for g in GROUPS}}
    row.update(dict.fromkeys(NUMBERS, math.nan), status="ok")
    summary = _json(run_dir / "summary.json")
    evaluated = _json(run_dir / "metrics.json")  # from ddpm.evaluate, else from training
    for name, metric in METRICS.items():
        row[name] = evaluated.get(name, summary.get(metric.tag, math.nan))
    row["wall_s"] = summary.get("wall_seconds", math.nan)
    if (run_dir / "FAILED").is_file():
        row["status"] = "failed: " + (run_dir / "FAILED").read_text().strip()
    elif not summary:
        row["status"] = "unfinished"
    return row


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def collect(sweep_dir: Path) -> list[dict[str, Any]]:
    runs = sorted(p.parent.parent for p in sweep_dir.glob("*/.hydra/config.yaml"))
    rows = [read_run(r) for r in runs]
    key = "fd" if any(not math.isnan(r["fd"]) for r in rows) else "final_loss"
    return sorted(rows, key=lambda r: (math.isnan(r[key]), r[key]))


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = ["run", *GROUPS, *NUMBERS, "status"]
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddpm.compare", description=__doc__)
    p.add_argument("sweep_dir", type=folder, help="a sweep's folder (multirun/<date>/<time>)")
    args = p.parse_args(argv)
    return run_tool(lambda: compare(args.sweep_dir))


def compare(sweep_dir: Path) -> int:
    rows = collect(sweep_dir)
    if not rows:
        raise ConfigError(
            f"{sweep_dir} is not a sweep: no runs (*/.hydra/config.yaml) under it "
            "(python -m ddpm.run -m ... writes them)"
        )
    table = markdown(rows)
    (sweep_dir / "compare.md").write_text(table)
    with open(sweep_dir / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(table + f"\nwritten: {sweep_dir / 'compare.md'}, {sweep_dir / 'compare.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
