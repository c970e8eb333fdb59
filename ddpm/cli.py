"""What the command-line tools share: checked argument types and one way to fail.

A tool's expected failures (a bad value, a folder that is not a run, missing data, a
corrupt file) end in one `error: ...` line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ddpm.errors import EXPECTED, ConfigError

RUN_CONFIG = Path(".hydra") / "config.yaml"


def positive_int(text: str) -> int:
    return _bounded_int(text, 1)


def non_negative_int(text: str) -> int:
    return _bounded_int(text, 0)


def _bounded_int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
    return value


def port(text: str) -> int:
    value = _bounded_int(text, 1)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{value} must be >= 0")
    return value


def folder(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is not a folder")
    return path


def run_dir(text: str) -> Path:
    """A training run's folder: it holds the run's saved config."""
    path = folder(text)
    if not (path / RUN_CONFIG).is_file():
        raise argparse.ArgumentTypeError(
            f"{path} is not a run folder: it has no {RUN_CONFIG} (python -m ddpm.run writes one)"
        )
    return path


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a file")
    return path


def load_config(run: Path) -> DictConfig:
    """A run's saved config; an unreadable one is a ConfigError that names the file."""
    path = run / RUN_CONFIG
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # a YAML parse error, a file that cannot be read
        reason = " ".join(str(err).split())
        raise ConfigError(f"{path} is not a readable run config: {reason}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} is not a run config (not a mapping)")
    return cfg


def run_tool(main: Callable[[], int]) -> int:
    """main()'s exit code; an expected failure prints one line and exits 2."""
    try:
        return main()
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
