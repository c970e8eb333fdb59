"""Reverse-process samplers as tables of per-step coefficients.

Both samplers write one reverse step as  x_prev = a * x0_hat + b * x_t + sigma * z,
with x0_hat predicted from the network output and clipped to [-1, 1]:
- DDPM (Ho et al. 2020, eq. 6-7): a, b are the posterior-mean coefficients, sigma^2 is the
  posterior variance ("small") or beta_t ("large").
- DDIM (Song et al. 2021, eq. 12): with sigma = eta * sqrt((1-ab_prev)/(1-ab) (1-ab/ab_prev)),
  a = sqrt(ab_prev) - sqrt(1-ab_prev-sigma^2) sqrt(ab)/sqrt(1-ab) and
  b = sqrt(1-ab_prev-sigma^2)/sqrt(1-ab).
So one compiled step serves both; a sampler is just its table, built once in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddpm.diffusion import GaussianDiffusion
from ddpm.registry import ConfigError, Registry

SAMPLERS = Registry("sampler")


@dataclass(frozen=True)
class SamplerPlan:
    """timesteps [S] (descending) and coefs [S, 5] = (sqrt_ab, sqrt_1m_ab, a, b, sigma)."""

    timesteps: np.ndarray
    coefs: np.ndarray

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)


def _plan(diffusion: GaussianDiffusion, timesteps: np.ndarray, a, b, sigma) -> SamplerPlan:
    t = timesteps
    coefs = np.stack(
        [diffusion.sqrt_alphas_cumprod[t], diffusion.sqrt_one_minus_alphas_cumprod[t], a, b, sigma],
        axis=1,
    )
    return SamplerPlan(timesteps=t.astype(np.int64), coefs=coefs)


@SAMPLERS.register("ddpm")
def ddpm_plan(diffusion: GaussianDiffusion, variance: str = "small", **_: object) -> SamplerPlan:
    """Ancestral sampling over all T steps; no noise is added at the last step."""
    t = np.arange(diffusion.num_timesteps - 1, -1, -1)
    sigma = np.where(t > 0, np.sqrt(diffusion.reverse_variance(variance)[t]), 0.0)
    a, b = diffusion.posterior_mean_coef1[t], diffusion.posterior_mean_coef2[t]
    return _plan(diffusion, t, a, b, sigma)


def ddim_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """'Trailing' spacing (Lin et al. 2023, table 2): starts at t = T-1, descending."""
    if not 1 <= steps <= num_timesteps:
        raise ConfigError(f"sampler.steps must be in [1, {num_timesteps}], got {steps}")
    t = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)).astype(np.int64) - 1
    return t


@SAMPLERS.register("ddim")
def ddim_plan(
    diffusion: GaussianDiffusion, steps: int = 50, eta: float = 0.0, **_: object
) -> SamplerPlan:
    """DDIM over a sub-sequence of `steps` timesteps; eta = 0 is deterministic."""
    if eta < 0:
        raise ConfigError(f"sampler.eta must be >= 0, got {eta}")
    t = ddim_timesteps(diffusion.num_timesteps, steps)
    ab = diffusion.alphas_cumprod[t]
    ab_prev = np.append(diffusion.alphas_cumprod[t[1:]], 1.0)
    sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    direction = np.sqrt(np.clip(1 - ab_prev - sigma**2, 0.0, None))
    b = direction / np.sqrt(1 - ab)
    a = np.sqrt(ab_prev) - b * np.sqrt(ab)
    return _plan(diffusion, t, a, b, sigma)


def make_plan(diffusion: GaussianDiffusion, name: str, **params: object) -> SamplerPlan:
    return SAMPLERS.get(name)(diffusion, **params)
