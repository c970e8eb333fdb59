"""The failures a run or a tool reports: a user can fix the first three (exit code 2);
the last two end a training run (see ddpm.run for their exit codes)."""

from __future__ import annotations

import signal
from pathlib import Path


class ConfigError(ValueError):
    """A config value or command-line flag is unknown or invalid; raised before anything runs."""


class DatasetError(RuntimeError):
    """Data is missing, corrupt or truncated; the message names the file or the folders searched."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or corrupt; the message names the file."""


EXPECTED = (ConfigError, DatasetError, CheckpointError)


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; the current step finished and a checkpoint was written."""

    def __init__(self, signum: int, step: int, path: Path | None) -> None:
        super().__init__(f"{signal.Signals(signum).name} at step {step}; checkpoint {path}")
        self.signum, self.step, self.path = signum, step, path


class NonFiniteLoss(FloatingPointError):
    """The loss or gradient norm became NaN/inf; nothing from this step was saved."""
