"""Noise schedules beta_1..beta_T, computed in float64 numpy.

Every schedule returns betas of shape [T]. Two fixes for schedules that never reach pure
noise: `scale_to_T` on the beta-range schedules (ends scaled by 1000/T, as in
improved-diffusion), and the group-wide `zero_terminal_snr` (Lin et al. 2023, Alg. 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ddpm.config.registry import ConfigError, Option, Registry
from ddpm.config.schema import NonNegativeFloat, Range

Beta = Annotated[float, Range(gt=0, le=1)]


@dataclass(frozen=True)
class ScheduleKeys:
    """The keys every schedule takes."""

    timesteps: Annotated[int, Range(ge=2)]
    zero_terminal_snr: bool  # rescale so alpha_bar_T = 0; needs pred_v or pred_x0


SCHEDULES = Registry("schedule", shared=ScheduleKeys)


def _beta_range(start: float, end: float, timesteps: int, scale_to_T: bool) -> tuple[float, float]:
    """The ends of a beta-range schedule, scaled by 1000/T when asked (improved-diffusion)."""
    if start > end:
        raise ConfigError(f"schedule.beta_start={start} must be <= schedule.beta_end={end}")
    scale = 1000.0 / timesteps if scale_to_T else 1.0
    return start * scale, end * scale


@SCHEDULES.register("linear")
def linear_betas(
    timesteps: int, *, beta_start: Beta, beta_end: Beta, scale_to_T: bool
) -> np.ndarray:
    """Ho et al. 2020: betas linear from beta_start to beta_end."""
    start, end = _beta_range(beta_start, beta_end, timesteps, scale_to_T)
    return np.linspace(start, end, timesteps, dtype=np.float64)


@SCHEDULES.register("quadratic")
def quadratic_betas(
    timesteps: int, *, beta_start: Beta, beta_end: Beta, scale_to_T: bool
) -> np.ndarray:
    """sqrt(beta) linear between the square roots of the ends (ends are not squared twice)."""
    start, end = _beta_range(beta_start, beta_end, timesteps, scale_to_T)
    return np.linspace(start**0.5, end**0.5, timesteps, dtype=np.float64) ** 2


@SCHEDULES.register("sigmoid")
def sigmoid_betas(
    timesteps: int, *, beta_start: Beta, beta_end: Beta, scale_to_T: bool
) -> np.ndarray:
    """Annotated Diffusion / diffusers: sigmoid(linspace(-6, 6, T)) mapped onto [start, end]."""
    start, end = _beta_range(beta_start, beta_end, timesteps, scale_to_T)
    x = np.linspace(-6.0, 6.0, timesteps, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x)) * (end - start) + start


@SCHEDULES.register("cosine")
def cosine_betas(timesteps: int, *, s: NonNegativeFloat, max_beta: Beta) -> np.ndarray:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(t) = cos^2(((t/T)+s)/(1+s) * pi/2)."""
    steps = np.arange(timesteps + 1, dtype=np.float64) / timesteps
    alpha_bar = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return np.clip(betas, 0.0, max_beta)


def rescale_zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Lin et al. 2023, Alg. 1: shift/scale sqrt(alpha_bar) so it is 1 at t=1... 0 at T."""
    sqrt_ab = np.sqrt(np.cumprod(1.0 - betas))
    first, last = sqrt_ab[0], sqrt_ab[-1]
    sqrt_ab = (sqrt_ab - last) * first / (first - last)
    alpha_bar = sqrt_ab**2
    alphas = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas


def make_betas(schedule: Option) -> np.ndarray:
    """Betas [T] of a resolved schedule option, with the zero-terminal-SNR fix if asked."""
    keys: ScheduleKeys = schedule.shared
    betas = schedule(keys.timesteps)
    if keys.zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    if not (np.all(betas > 0) and np.all(betas <= 1.0)):
        raise ConfigError(
            f"schedule {schedule.name!r} with {schedule.params} gives betas outside (0, 1]"
        )
    return betas
