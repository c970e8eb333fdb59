"""The reverse-process variance of DDPM: fixed, or learned (Nichol & Dhariwal 2021, sec. 3.1).

`variance=fixed` is Ho et al.'s: sigma_t^2 is beta~_t or beta_t, chosen by the DDPM
sampler's `variance` key. `variance=learned` makes the network output a second set of C
channels, v, that interpolates between the two in the log domain (Improved DDPM eq. 15,
with improved-diffusion's "learned_range" mapping of v in [-1, 1]):

    Sigma_theta = exp(f log beta_t + (1 - f) log beta~_t),    f = (v + 1) / 2.

It is trained by L_hybrid = L_simple + lambda L_vlb (eq. 16, lambda = vlb_weight = 0.001),
with the mean's output held fixed (stop-gradient) inside L_vlb so that the bound only
trains v. L_vlb = sum_t L_t is estimated from the sampled t as T L_t, which is
improved-diffusion's "rescaled" vb term, T / 1000 L_t, for lambda = 0.001. The DDPM
sampler and bits/dim use Sigma_theta; DDIM and DPM-Solver use the mean output alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddpm.config.registry import Registry
from ddpm.config.schema import NonNegativeFloat

VARIANCES = Registry("variance")


@VARIANCES.register("fixed")
def fixed() -> None:
    """Ho et al.'s fixed sigma_t^2, set by the DDPM sampler's `variance` key."""
    return None


@dataclass(frozen=True)
class LearnedRange:
    """Sigma_theta between beta~_t and beta_t, trained by the hybrid loss."""

    vlb_weight: float  # lambda of L_hybrid = L_simple + lambda L_vlb

    def log_variance(self, v, min_log, max_log):
        """log Sigma_theta from the network's v: f max_log + (1 - f) min_log, f = (v + 1) / 2."""
        frac = (v + 1.0) * 0.5
        return frac * max_log + (1.0 - frac) * min_log


@VARIANCES.register("learned")
def learned(*, vlb_weight: NonNegativeFloat) -> LearnedRange:
    """The network learns Sigma_theta (Improved DDPM), trained with lambda = vlb_weight."""
    return LearnedRange(vlb_weight)


def log_variance_range(betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log beta~_t, log beta_t) per timestep of `betas` [S] in ascending t, the range a
    learned Sigma spans; beta~ at t = 0, which is 0, takes beta~ at t = 1 (improved-
    diffusion's posterior_log_variance_clipped)."""
    alphas_cumprod = np.cumprod(1.0 - betas)
    prev = np.concatenate([[1.0], alphas_cumprod[:-1]])
    posterior = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
    floor = posterior[1] if len(betas) > 1 else betas[0]  # one step: no beta~ > 0 exists
    return np.log(np.append(floor, posterior[1:])), np.log(betas)
