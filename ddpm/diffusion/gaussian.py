"""Gaussian diffusion (Ho et al. 2020): coefficients and the closed forms that use them.

The diffusion owns no network. Coefficients are float64 numpy arrays of shape [T],
indexed by the 0-based timestep t (t = 0 is the paper's t = 1). The functions below use
only arithmetic, so they work on numpy arrays and on MindSpore tensors alike; inside a
compiled graph the caller gathers the per-example coefficients of shape [B, 1, 1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ddpm.config.registry import ConfigError

REVERSE_VARIANCES = ("large", "small")


def q_sample(x_start, noise, sqrt_ab, sqrt_one_minus_ab):
    """Sample x_t ~ q(x_t | x_0), eq. 4: sqrt(ab) x_0 + sqrt(1 - ab) eps. Shapes [B, C, H, W]."""
    return sqrt_ab * x_start + sqrt_one_minus_ab * noise


def velocity(x_start, noise, sqrt_ab, sqrt_one_minus_ab):
    """v = sqrt(ab) eps - sqrt(1 - ab) x_0 (Salimans & Ho 2022, sec. 4)."""
    return sqrt_ab * noise - sqrt_one_minus_ab * x_start


@dataclass(frozen=True)
class GaussianDiffusion:
    """All per-timestep coefficients of a schedule, precomputed once in float64, and the
    objective (ddpm.diffusion.objectives) that says what the network predicts."""

    betas: np.ndarray
    objective: Any  # a ddpm.diffusion.objectives.Objective
    # A continuous formulation (ddpm.diffusion.formulations) that trains and samples in
    # place of the betas and objective; None: DDPM.
    formulation: Any = None
    # A learned reverse variance (ddpm.diffusion.variance.LearnedRange); None: fixed.
    variance: Any = None

    def __post_init__(self) -> None:
        self.objective.check(self.alphas_cumprod)

    @property
    def num_timesteps(self) -> int:
        return len(self.betas)

    @cached_property
    def alphas_cumprod(self) -> np.ndarray:
        return np.cumprod(1.0 - self.betas)

    @cached_property
    def alphas_cumprod_prev(self) -> np.ndarray:
        return np.concatenate([[1.0], self.alphas_cumprod[:-1]])

    @cached_property
    def sqrt_alphas_cumprod(self) -> np.ndarray:
        return np.sqrt(self.alphas_cumprod)

    @cached_property
    def sqrt_one_minus_alphas_cumprod(self) -> np.ndarray:
        return np.sqrt(1.0 - self.alphas_cumprod)

    @cached_property
    def snr(self) -> np.ndarray:
        """Signal-to-noise ratio ab / (1 - ab), shape [T]."""
        return self.alphas_cumprod / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_variance(self) -> np.ndarray:
        """beta~_t = beta_t (1 - ab_{t-1}) / (1 - ab_t), eq. 7."""
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_mean_coef1(self) -> np.ndarray:
        """Coefficient of x_0 in mu~_t, eq. 7."""
        return self.betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_mean_coef2(self) -> np.ndarray:
        """Coefficient of x_t in mu~_t, eq. 7."""
        alphas = 1.0 - self.betas
        return (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)

    def reverse_variance(self, kind: str) -> np.ndarray:
        """Fixed sigma_t^2 of p(x_{t-1} | x_t), shape [T] (Ho et al. sec. 3.2).

        small: beta~_t, the posterior variance (0 at t = 0). large: beta_t, with beta~_1 at
        t = 0 as in improved-diffusion's "fixedlarge", which keeps its log finite.
        """
        if kind == "small":
            return self.posterior_variance
        if kind == "large":
            return np.append(self.posterior_variance[1], self.betas[1:])
        raise ConfigError(
            f"unknown reverse variance {kind!r} (sampler.variance); "
            f"valid: {', '.join(REVERSE_VARIANCES)}"
        )

    def q_posterior(self, x_start: np.ndarray, x_t: np.ndarray, t: int) -> tuple[np.ndarray, float]:
        """Mean and variance of q(x_{t-1} | x_t, x_0), eq. 6-7, for one timestep t."""
        mean = self.posterior_mean_coef1[t] * x_start + self.posterior_mean_coef2[t] * x_t
        return mean, float(self.posterior_variance[t])

    def terminal_alpha_bar(self) -> float:
        """alpha_bar at t=T: the fraction of signal variance left where sampling starts."""
        return float(self.alphas_cumprod[-1])
