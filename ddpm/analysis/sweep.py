"""A sweep's runs as records: what each run chose, what it measured, and which runs differ
only by seed.

A run's choices are its saved config, flattened to dotted keys. A budgeted run's saved
config holds the step count its budget fixed; its choice was trainer.minutes, which
budget.json still holds, so that is what the record shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ddpm.config.groups import GROUPS
from ddpm.config.run_folder import RUN_CONFIG, RunFolder, load_config
from ddpm.evaluation.metrics import METRICS

# Keys that say where or how a run was started, not what it is.
NOT_CHOICES = ("seed", "trainer.resume", "dataset.root")
# Groups whose options have keys of their own: a varying option name stands for them.
OPTION_GROUPS = tuple(GROUPS)


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]  # dotted key -> value, as chosen
    seed: int
    metrics: dict[str, float]  # every declared metric, NaN when not computed
    status: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)  # steps, eval_n, train_s

    @property
    def name(self) -> str:
        return self.path.name


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists become their string form."""
    if not isinstance(tree, dict):
        return {prefix: str(tree) if isinstance(tree, list) else tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def read_run(path: Path) -> RunRecord:
    config = flatten(OmegaConf.to_container(load_config(path), resolve=True))
    folder = RunFolder(path)
    budget = _json(folder.budget)
    if budget:  # the choice was the budget; the step count was its outcome
        config["trainer.minutes"], config["trainer.steps"] = budget["minutes"], None
    summary, evaluated = _json(folder.summary), _json(folder.evaluation)
    metrics = {
        name: float(evaluated.get(name, summary.get(metric.tag, math.nan)))
        for name, metric in METRICS.items()
    }
    extra = {
        "steps": summary.get("steps", math.nan),
        "train_s": summary.get("train_seconds", math.nan),
        "eval_n": evaluated.get("n", config.get("trainer.eval_n") or math.nan),
    }
    status = "ok"
    if folder.failed.is_file():
        status = "failed: " + folder.failed.read_text().strip()
    elif not summary:
        status = "unfinished"
    seed = int(config.pop("seed", 0))
    return RunRecord(path, config, seed, metrics, status, extra)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def read_sweep(sweep_dir: Path) -> list[RunRecord]:
    return [read_run(p.parent.parent) for p in sorted(sweep_dir.glob(f"*/{RUN_CONFIG}"))]


def varying_keys(records: list[RunRecord]) -> list[str]:
    """The config keys whose values differ across the runs (seed aside). Where an option
    name varies, it stands for the keys of its options, unless one of those also varies
    between runs of the same option."""
    keys = sorted({k for r in records for k in r.config} - set(NOT_CHOICES))
    varied = [k for k in keys if len({_hashable(r.config.get(k)) for r in records}) > 1]
    named = {g for g in OPTION_GROUPS if f"{g}.name" in varied}

    def shown(key: str) -> bool:
        group = key.split(".")[0]
        if group not in named or key == f"{group}.name":
            return True
        by_option: dict[Any, set] = {}
        for r in records:
            by_option.setdefault(r.config.get(f"{group}.name"), set()).add(
                _hashable(r.config.get(key))
            )
        return any(len(values) > 1 for values in by_option.values())

    return [k for k in varied if shown(k)]


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True, default=str)


def label(key: str) -> str:
    """A column's name: `schedule` for schedule.name, the dotted key otherwise."""
    return key[: -len(".name")] if key.endswith(".name") else key


@dataclass
class Group:
    """Runs that differ only by seed."""

    choice: dict[str, Any]  # varying key -> value
    runs: list[RunRecord]

    def values(self, metric: str) -> list[float]:
        return [r.metrics.get(metric, r.extra.get(metric, math.nan)) for r in self.runs]

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs)


def group_by_seed(records: Iterable[RunRecord], keys: list[str]) -> list[Group]:
    groups: dict[tuple, Group] = {}
    for record in records:
        choice = {k: record.config.get(k) for k in keys}
        key = tuple(_hashable(v) for v in choice.values())
        groups.setdefault(key, Group(choice, [])).runs.append(record)
    return list(groups.values())
