"""Hydra callbacks: a sweep reports its failed runs at the end and exits non-zero."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("ddpm")
FAILED_MARKER = "FAILED"


class SweepSummary(Callback):
    """Collects failed runs (marked by ddpm.run) and summarises them after the sweep."""

    def __init__(self) -> None:
        self.failed: list[tuple[str, str]] = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        marker = Path(config.hydra.runtime.output_dir) / FAILED_MARKER
        if marker.is_file():
            reason = marker.read_text().strip().splitlines()[-1]
            self.failed.append((config.hydra.job.override_dirname or "(no overrides)", reason))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.failed:
            return
        lines = "\n".join(f"  - {name}: {reason}" for name, reason in self.failed)
        log.error("%d run(s) of the sweep failed:\n%s", len(self.failed), lines)
        print(f"{len(self.failed)} run(s) of the sweep failed:\n{lines}", file=sys.stderr)
        sys.exit(1)
