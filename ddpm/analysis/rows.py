"""Rows of metrics over seeds (one per run and setting), as the scoring tools write them:
the CSV, the Markdown table of means and 95% t half-widths, and the plotting backend."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from ddpm.analysis.stats import estimate

Row = dict[str, Any]


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file; none when it does not exist yet."""
    if not path.is_file():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def append_csv(path: Path, row: Row, fields: list[str]) -> None:
    """Append one row, writing the header first into a new file: a study that stops keeps
    every row it scored."""
    new = not path.is_file()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if new:
            writer.writeheader()
        writer.writerow(row)


def format_estimate(values: list[float], digits: int) -> str:
    """'mean ± half-width' of the 95% t interval over seeds, or 'mean (1 seed)'."""
    est = estimate(values)
    if not est.has_interval:
        return f"{est.mean:.{digits}f} ({est.n} seed)"
    return f"{est.mean:.{digits}f} ± {est.half_width:.{digits}f}"


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def mean_table(rows: list[Row], key: str, metrics: tuple[str, ...], title: str) -> list[str]:
    """A Markdown table, a line per value of `key` (in order of appearance): each metric's
    mean over the rows with that value, +- its 95% t half-width (none for one row)."""
    lines = [f"| {title} | " + " | ".join(metrics) + " |", "|" + "---|" * (len(metrics) + 1)]
    for value in dict.fromkeys(r[key] for r in rows):
        cells = [f"{value:g}" if isinstance(value, float) else str(value)]
        for m in metrics:
            est = estimate([r[m] for r in rows if r[key] == value])
            cells.append(
                f"{est.mean:.4g}" + (f" +- {est.half_width:.2g}" if est.has_interval else "")
            )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_outputs(rows: list[Row], out: Path, stem: str, table: str, plot) -> None:
    """out/<stem>.csv, .md (`table`) and, where `plot(rows, path)` can draw it, .png; prints
    the table and the files written."""
    write_csv(rows, out / f"{stem}.csv")
    (out / f"{stem}.md").write_text(table)
    written = [out / f"{stem}.md", out / f"{stem}.csv"]
    written += [out / f"{stem}.png"] if plot(rows, out / f"{stem}.png") else []
    print(table + "\nwritten: " + ", ".join(map(str, written)))


def pyplot(path: Path):
    """matplotlib.pyplot on a file backend, or None (with a note naming `path`) without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        print(f"(no {path.name}: {err}; pip install -e .[plots])", file=sys.stderr)
        return None
    return plt
