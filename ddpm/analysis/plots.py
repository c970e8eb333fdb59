"""compare.png: each logged metric against training step and against wall-clock minutes,
a line per group of seeds with a band for its 95% t interval. Reads the runs' TensorBoard
events; needs the `plots` extra (matplotlib, tensorboard)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from ddpm.analysis.stats import estimate  # noqa: E402
from ddpm.analysis.sweep import Group, label  # noqa: E402
from ddpm.evaluation.metrics import METRICS  # noqa: E402

TAGS = tuple(m.curve for m in METRICS.values() if m.curve)
GRID = 60  # points of the common minutes axis


def series(run: Path, tag: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(steps, minutes since the tag's first point, values) of one run, or None."""
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return None
    events = acc.Scalars(tag)
    steps = np.array([e.step for e in events])
    wall = np.array([e.wall_time for e in events])
    return steps, (wall - wall[0]) / 60.0, np.array([e.value for e in events])


def band(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and the 95% t interval across curves sampled on one axis."""
    stacked = np.stack(curves)
    estimates = [estimate(list(column)) for column in stacked.T]
    mean = np.array([e.mean for e in estimates])
    half = np.array([e.half_width if e.has_interval else 0.0 for e in estimates])
    return mean, mean - half, mean + half


def curves(group: Group, tag: str):
    """(steps, band by step, minutes, band by minutes) of a group's seeds for one tag;
    None when its runs logged fewer than two points of it."""
    found = [s for s in (series(r.path, tag) for r in group.runs) if s is not None]
    if not found or max(len(s[0]) for s in found) < 2:
        return None
    steps = sorted(set.intersection(*(set(s[0].tolist()) for s in found)))
    by_step = [np.array([dict(zip(s[0], s[2], strict=True))[k] for k in steps]) for s in found]
    minutes = np.linspace(0.0, min(s[1][-1] for s in found), GRID)
    by_time = [np.interp(minutes, s[1], s[2]) for s in found]
    return np.array(steps), band(by_step), minutes, band(by_time)


def plot_curves(groups: list[Group], keys: list[str], path: Path) -> bool:
    """Write compare.png; False when no run logged a curve."""
    names = [", ".join(f"{label(k)}={g.choice[k]}" for k in keys) or "all runs" for g in groups]
    found = {tag: [(n, curves(g, tag)) for g, n in zip(groups, names, strict=True)] for tag in TAGS}
    found = {tag: [(n, c) for n, c in items if c is not None] for tag, items in found.items()}
    found = {tag: items for tag, items in found.items() if items}
    if not found:
        return False
    fig, grid = plt.subplots(len(found), 2, figsize=(12, 3.2 * len(found)), squeeze=False)
    for row, (tag, items) in zip(grid, found.items(), strict=True):
        for name, (steps, by_step, minutes, by_time) in items:
            for ax, x, (mean, low, high) in ((row[0], steps, by_step), (row[1], minutes, by_time)):
                (line,) = ax.plot(x, mean, label=name)
                ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
        for ax, axis in zip(row, ("training step", "wall-clock minutes"), strict=True):
            ax.set(xlabel=axis, ylabel=tag)
            ax.grid(alpha=0.3)
        row[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
