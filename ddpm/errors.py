"""The failures a user can cause and fix: each ends a tool with one line and exit code 2."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value or command-line flag is unknown or invalid; raised before anything runs."""


class DatasetError(RuntimeError):
    """Data is missing, corrupt or truncated; the message names the file or the folders searched."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or corrupt; the message names the file."""


EXPECTED = (ConfigError, DatasetError, CheckpointError)
