"""Hydra callbacks: a sweep names its runs by what varies, and reports its failed runs.

Failed runs are found by their FAILED markers (written by ddpm.run) in the sweep folder,
so this works whichever launcher ran them: the basic one in this process, joblib in
worker processes, submitit in separate jobs. The keys a sweep varies reach the jobs the
same way whatever the launcher: through the environment, which every job inherits.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ddpm.config.run_folder import FAILED

log = logging.getLogger("ddpm")


SWEEP_KEYS_ENV = "DDPM_SWEEP_KEYS"


def run_name(overrides: list[str] | str, limit: int = 120) -> str:
    """A sweep run's folder (and TensorBoard) name: the overrides of the keys the sweep
    varies (all of them outside a sweep), shortened with a hash past `limit` characters."""
    if isinstance(overrides, str):
        overrides = [overrides] if overrides else []
    varied = [k for k in os.environ.get(SWEEP_KEYS_ENV, "").split(",") if k]
    chosen = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in varied] if varied else []
    name = ",".join(sorted(chosen or overrides)).replace("/", "_") or "default"
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}~{hashlib.sha1(name.encode()).hexdigest()[:8]}"


# conf/config.yaml names a sweep's run folders ${run_name:${hydra.overrides.task}}.
OmegaConf.register_new_resolver("run_name", run_name, replace=True)


def sweep_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies: its sweep overrides (a,b / range / choice ...) and the
    parameters its sweeper searches (Optuna's hydra.sweeper.params)."""
    parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.key_or_group for o in parsed if o.is_sweep_override()]
    params = config.hydra.sweeper.get("params") or {}
    return keys + [k for k in params if k not in keys]


class SweepSummary(Callback):
    """Names the runs by the keys the sweep varies; lists failed runs at the end and exits 1
    if there were any."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[SWEEP_KEYS_ENV] = ",".join(sweep_keys(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = [
            (marker.parent.name, marker.read_text().strip().splitlines()[-1])
            for marker in sorted(sweep_dir.glob(f"*/{FAILED}"))
        ]
        if not failed:
            return
        lines = "\n".join(f"  - {name}: {reason}" for name, reason in failed)
        log.error("%d run(s) of the sweep failed:\n%s", len(failed), lines)
        print(f"{len(failed)} run(s) of the sweep failed:\n{lines}", file=sys.stderr)
        sys.exit(1)
