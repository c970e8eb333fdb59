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

from ddpm.config.errors import EXPECTED
from ddpm.config.run_folder import RUN_CONFIG


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


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("it must be > 0")
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


# Help and type of each sampler override (ddpm.sampling.options.SAMPLER_OVERRIDES).
_SAMPLER_FLAGS: dict[str, dict] = {
    "steps": {"type": positive_int, "help": "timesteps visited (at most T)"},
    "eta": {"type": non_negative_float, "help": "DDIM eta (0 = deterministic)"},
    "order": {"type": positive_int, "help": "DPM-Solver++ order (1 or 2)"},
    "variance": {
        "choices": ["small", "large"],
        "help": "the DDPM sampler's fixed sigma^2: beta~_t or beta_t (a learned one is used as is)",
    },
    "guidance": {
        "type": non_negative_float,
        "help": "classifier-free guidance w of a conditional model: 0 unconditional, 1 conditional",
    },
    "guidance_interval": {
        "type": lambda text: float_list(text, 2),
        "metavar": "LO,HI",
        "help": "apply w only at steps with t/T in (LO, HI]; w = 1 elsewhere",
    },
    "S_churn": {"type": non_negative_float, "help": "EDM's stochastic churn (0: the ODE)"},
    "shift": {"type": positive_float, "help": "flow matching's time shift of the steps"},
}


def add_sampler_flags(p: argparse.ArgumentParser) -> None:
    """--sampler and a flag per sampler override (default: the run's own sampler). The
    sampler modules load MindSpore, which the tools without sampling do not need."""
    from ddpm.diffusion.samplers import SAMPLERS
    from ddpm.sampling.options import SAMPLER_OVERRIDES

    p.add_argument("--sampler", choices=SAMPLERS.names(), help="default: the run's sampler")
    for key in SAMPLER_OVERRIDES:
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, **_SAMPLER_FLAGS[key])


def sampler_flags(args: argparse.Namespace) -> dict:
    """The sampler overrides given on the command line, by key (None: not given)."""
    from ddpm.sampling.options import SAMPLER_OVERRIDES

    return {key: getattr(args, key) for key in SAMPLER_OVERRIDES}
