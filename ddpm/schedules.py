"""Noise schedules beta_1..beta_T, computed in float64 numpy.

Every schedule returns betas of shape [T]. The two fixes for schedules that never reach
pure noise are options applied on top: `scale_to_T` (ends scaled by 1000/T, as in
improved-diffusion) and `zero_terminal_snr` (Lin et al. 2023, Algorithm 1).
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from ddpm.registry import ConfigError, Registry

SCHEDULES = Registry("schedule")


@SCHEDULES.register("linear")
def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al. 2020: betas linear from beta_start to beta_end."""
    return np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)


@SCHEDULES.register("quadratic")
def quadratic_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """sqrt(beta) linear between the square roots of the ends (ends are not squared twice)."""
    return np.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=np.float64) ** 2


@SCHEDULES.register("sigmoid")
def sigmoid_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Annotated Diffusion / diffusers: sigmoid(linspace(-6, 6, T)) mapped onto [start, end]."""
    x = np.linspace(-6.0, 6.0, timesteps, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-x)) * (beta_end - beta_start) + beta_start


@SCHEDULES.register("cosine")
def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
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


def make_betas(
    name: str,
    timesteps: int,
    *,
    scale_to_T: bool = False,
    zero_terminal_snr: bool = False,
    **params: float,
) -> np.ndarray:
    """Betas [T] for schedule `name`, with the optional terminal-SNR fixes applied."""
    if timesteps < 2:
        raise ConfigError(f"schedule.timesteps must be >= 2, got {timesteps}")
    schedule = SCHEDULES.get(name)
    if scale_to_T:
        defaults = {k: p.default for k, p in inspect.signature(schedule).parameters.items()}
        if "beta_start" not in defaults:
            raise ConfigError(f"schedule.scale_to_T applies to beta-range schedules, not {name!r}")
        scale = 1000.0 / timesteps
        params = {**params}
        for end in ("beta_start", "beta_end"):
            params[end] = params.get(end, defaults[end]) * scale
    betas = schedule(timesteps, **params)
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    if not (np.all(betas > 0) and np.all(betas <= 1.0)):
        raise ConfigError(f"schedule {name!r} with {params} gives betas outside (0, 1]")
    return betas
