"""Hydra callbacks: a sweep reports its failed runs at the end and exits non-zero.

Failed runs are found by their FAILED markers (written by ddpm.run) in the sweep folder,
so this works whichever launcher ran them: the basic one in this process, joblib in
worker processes, submitit in separate jobs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("ddpm")
FAILED_MARKER = "FAILED"


class SweepSummary(Callback):
    """Lists the sweep's failed runs after it ends and exits 1 if there were any."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        failed = [
            (marker.parent.name, marker.read_text().strip().splitlines()[-1])
            for marker in sorted(sweep_dir.glob(f"*/{FAILED_MARKER}"))
        ]
        if not failed:
            return
        lines = "\n".join(f"  - {name}: {reason}" for name, reason in failed)
        log.error("%d run(s) of the sweep failed:\n%s", len(failed), lines)
        print(f"{len(failed)} run(s) of the sweep failed:\n{lines}", file=sys.stderr)
        sys.exit(1)
