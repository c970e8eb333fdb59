"""What the command-line tools share: checked argument types and one way to fail.

A tool's expected failures (a bad value, a folder that is not a run, missing data, a
corrupt file) end in one `error: ...` line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

from ddpm.errors import EXPECTED
from ddpm.runs import RUN_CONFIG


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


def float_list(text: str, count: int | None = None) -> list[float]:
    """'a,b,...' -> finite floats; exactly `count` of them when given."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from None
    if count is not None and len(values) != count:
        raise argparse.ArgumentTypeError(f"{text!r} is not {count} numbers")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} has a number that is not finite")
    return values


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


def run_tool(main: Callable[[], int]) -> int:
    """main()'s exit code; an expected failure prints one line and exits 2."""
    try:
        return main()
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
