"""Reverse-process samplers as tables of per-step coefficients.

Every sampler runs over `steps` of the T timesteps ('trailing' spacing; null: all T) and
writes one reverse step as

    x_prev = a * x0_hat + c * x0_hat_prev + b * x_t + sigma * z,

with x0_hat predicted from the network output (optionally clipped to [-1, 1]) and
x0_hat_prev the previous step's prediction. A multistep method is expressed by its c
column: the step hands its x0_hat back to the loop, which passes it to the next step.
- DDPM (Ho et al. 2020, eq. 6-7): a, b are the posterior-mean coefficients, sigma^2 is the
  posterior variance ("small") or beta_t ("large"). Over fewer steps than T these use the
  respaced betas 1 - ab_t / ab_prev (Nichol & Dhariwal 2021, sec. 4).
- DDIM (Song et al. 2021, eq. 12): with sigma = eta * sqrt((1-ab_prev)/(1-ab) (1-ab/ab_prev)),
  a = sqrt(ab_prev) - sqrt(1-ab_prev-sigma^2) sqrt(ab)/sqrt(1-ab) and
  b = sqrt(1-ab_prev-sigma^2)/sqrt(1-ab).
- DPM-Solver++(2M) (Lu et al. 2022, alg. 2): with alpha = sqrt(ab), sigma_t = sqrt(1-ab),
  lambda = log(alpha / sigma_t) and h = lambda_t - lambda_s, the data-prediction update
  x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^-h) D, where D = x0_hat for the first and
  last steps and D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev, r = h_prev / h, otherwise.
So one compiled step serves all three; a sampler is just its table, built once in float64.
A last column holds each step's classifier-free guidance scale w (ddpm.diffusion.conditioning): the
sampler's `guidance` at steps with t/T inside `guidance_interval` (lo, hi], and 1 (plain
conditional) outside it, which limits guidance to the middle noise levels as in
Kynkaanniemi et al. 2024.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ddpm.config.registry import ConfigError, Option, Registry
from ddpm.config.schema import Length, NonNegativeFloat, OneOf, Range
from ddpm.diffusion.gaussian import REVERSE_VARIANCES, GaussianDiffusion
from ddpm.diffusion.variance import log_variance_range


@dataclass(frozen=True)
class SamplerKeys:
    """The keys every sampler takes."""

    steps: Annotated[int | None, Range(gt=0)]  # timesteps visited, at most T; null: all T
    clip_denoised: bool  # clip each x_0 prediction to [-1, 1]
    guidance: NonNegativeFloat  # classifier-free guidance w (ddpm.diffusion.conditioning); 1: none
    guidance_interval: Annotated[list[float], Range(ge=0, le=1), Length(2)]  # (lo, hi] of t/T


SAMPLERS = Registry("sampler", shared=SamplerKeys)

# The columns of a plan's coefficient table, in order.
COEFS = ("sqrt_ab", "sqrt_1m_ab", "a", "b", "c", "sigma", "w")
# A DDPM plan for a learned variance (with_learned_sigma) adds the log-variance bounds.
LEARNED_COEFS = (*COEFS, "log_var_min", "log_var_max")


@dataclass(frozen=True)
class SamplerPlan:
    """timesteps [S] (descending) and coefs [S, 7], one row of COEFS per step."""

    timesteps: np.ndarray
    coefs: np.ndarray

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def guidance(self) -> np.ndarray:
        """The guidance scale w of each step [S]."""
        return self.coefs[:, COEFS.index("w")]

    @property
    def learned_sigma(self) -> bool:
        """Whether the rows carry LEARNED_COEFS: the noise follows a learned Sigma."""
        return self.coefs.shape[1] == len(LEARNED_COEFS)

    @property
    def labels(self) -> np.ndarray:
        """[S] int32: the network's time input at each step, the timestep."""
        return self.timesteps.astype(np.int32)

    @property
    def init_scale(self) -> float:
        """Sampling starts from x_T ~ N(0, I)."""
        return 1.0


def _plan(diffusion: GaussianDiffusion, timesteps: np.ndarray, a, b, sigma, c=0.0) -> SamplerPlan:
    t = timesteps
    sqrt_ab, sqrt_1m_ab = (
        diffusion.sqrt_alphas_cumprod[t],
        diffusion.sqrt_one_minus_alphas_cumprod[t],
    )
    columns = np.broadcast_arrays(sqrt_ab, sqrt_1m_ab, a, b, c, sigma, 1.0)
    return SamplerPlan(timesteps=t.astype(np.int64), coefs=np.stack(columns, axis=1))


def x0_coefs(diffusion: GaussianDiffusion, t: int) -> np.ndarray:
    """A coefficient row that only predicts x0_hat at timestep t (x_prev comes out as 0),
    without guidance."""
    row = np.zeros(len(COEFS))
    row[:2] = diffusion.sqrt_alphas_cumprod[t], diffusion.sqrt_one_minus_alphas_cumprod[t]
    row[COEFS.index("w")] = 1.0
    return row


def _respaced(diffusion: GaussianDiffusion, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """alpha_bar at the visited timesteps t [S] and at the step after each (1 after the last)."""
    ab = diffusion.alphas_cumprod[t]
    return ab, np.append(diffusion.alphas_cumprod[t[1:]], 1.0)


@SAMPLERS.register("ddpm")
def ddpm_plan(
    diffusion: GaussianDiffusion,
    t: np.ndarray,
    *,
    variance: Annotated[str, OneOf(REVERSE_VARIANCES)],
) -> SamplerPlan:
    """Ancestral sampling, eq. 6-7 with the respaced betas; no noise at the last step. A
    network that learns its variance gets the learned Sigma instead of `variance`."""
    ab, ab_prev = _respaced(diffusion, t)
    betas = respaced_betas(diffusion, t)
    a = betas * np.sqrt(ab_prev) / (1.0 - ab)
    b = (1.0 - ab_prev) * np.sqrt(1.0 - betas) / (1.0 - ab)
    small = betas * (1.0 - ab_prev) / (1.0 - ab)
    sigma = np.sqrt(small if variance == "small" else betas)
    sigma[-1] = 0.0
    plan = _plan(diffusion, t, a, b, sigma)
    return plan if diffusion.variance is None else with_learned_sigma(plan, diffusion)


def respaced_betas(diffusion: GaussianDiffusion, t: np.ndarray) -> np.ndarray:
    """1 - ab_t / ab_prev, the betas of the visited timesteps t [S] (beta_t over all T)."""
    ab, ab_prev = _respaced(diffusion, t)
    return 1.0 - ab / ab_prev


def with_learned_sigma(plan: SamplerPlan, diffusion: GaussianDiffusion) -> SamplerPlan:
    """A DDPM plan for a network that learns Sigma (ddpm.diffusion.variance), in the
    columns of LEARNED_COEFS: sigma is 1 (0 at the last step) and scales Sigma_theta^(1/2),
    whose log lies between log beta~ and log beta of the respaced betas (Improved DDPM
    sec. 4: the learned range follows the respacing)."""
    ascending = respaced_betas(diffusion, plan.timesteps)[::-1]
    min_log, max_log = (bound[::-1] for bound in log_variance_range(ascending))
    coefs = plan.coefs.copy()
    coefs[:, COEFS.index("sigma")] = 1.0
    coefs[-1, COEFS.index("sigma")] = 0.0
    return SamplerPlan(plan.timesteps, np.column_stack([coefs, min_log, max_log]))


def sampling_timesteps(num_timesteps: int, steps: int | None) -> np.ndarray:
    """'Trailing' spacing (Lin et al. 2023, table 2): starts at t = T-1, descending."""
    steps = steps or num_timesteps
    if not 1 <= steps <= num_timesteps:
        raise ConfigError(f"sampler.steps must be in [1, {num_timesteps}], got {steps}")
    t = np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)).astype(np.int64) - 1
    return t


@SAMPLERS.register("ddim")
def ddim_plan(diffusion: GaussianDiffusion, t: np.ndarray, *, eta: NonNegativeFloat) -> SamplerPlan:
    """DDIM over the visited timesteps; eta = 0 is deterministic."""
    ab, ab_prev = _respaced(diffusion, t)
    sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
    direction = np.sqrt(np.clip(1 - ab_prev - sigma**2, 0.0, None))
    b = direction / np.sqrt(1 - ab)
    a = np.sqrt(ab_prev) - b * np.sqrt(ab)
    return _plan(diffusion, t, a, b, sigma)


@SAMPLERS.register("dpm_solver")
def dpm_solver_plan(
    diffusion: GaussianDiffusion, t: np.ndarray, *, order: Annotated[int, OneOf((1, 2))]
) -> SamplerPlan:
    """DPM-Solver++ (data prediction), multistep of `order`; first order at the first and
    last steps (the last ends at sigma = 0, where h is infinite). Order 1 is DDIM, eta 0."""
    ab, ab_next = _respaced(diffusion, t)
    alpha_s, sigma_s = np.sqrt(ab), np.sqrt(1.0 - ab)
    alpha_t, sigma_t = np.sqrt(ab_next), np.sqrt(1.0 - ab_next)
    b = sigma_t / sigma_s
    first_order = alpha_t - alpha_s * b  # alpha_t (1 - e^-h), finite at sigma_t = 0
    a, c = first_order.copy(), np.zeros_like(first_order)
    if order == 2 and len(t) > 2:
        with np.errstate(divide="ignore"):  # alpha = 0 at a zero-terminal-SNR t = T: -inf
            lam = np.log(alpha_s / sigma_s)  # lambda at each visited timestep
        h, h_prev = lam[2:] - lam[1:-1], lam[1:-1] - lam[:-2]  # steps 1 .. S-2
        half_inv_r = h / (2.0 * h_prev)  # 1 / (2r)
        a[1:-1] = first_order[1:-1] * (1.0 + half_inv_r)
        c[1:-1] = -first_order[1:-1] * half_inv_r
    return _plan(diffusion, t, a, b, 0.0, c)


def describe(sampler: Option) -> str:
    """A sampler and its keys in one line, e.g. 'dpm_solver(steps=20, order=2, ...)'."""
    keys = {**vars(sampler.shared), **sampler.params}
    return f"{sampler.name}(" + ", ".join(f"{k}={v}" for k, v in keys.items()) + ")"


def guidance_scales(sampler: Option, t: np.ndarray, num_timesteps: int) -> np.ndarray:
    """w at each visited timestep t [S]: `guidance` inside the interval, 1 outside it."""
    lo, hi = sampler.shared.guidance_interval
    if lo >= hi:
        raise ConfigError(f"sampler.guidance_interval=[{lo}, {hi}] must have lo < hi")
    s = (t + 1) / num_timesteps  # in (0, 1]
    inside = (s > lo) & (s <= hi)
    return np.where(inside, sampler.shared.guidance, 1.0)


def make_plan(sampler: Option, diffusion: GaussianDiffusion) -> SamplerPlan:
    """The coefficient table of a resolved sampler option."""
    t = sampling_timesteps(diffusion.num_timesteps, sampler.shared.steps)
    plan = sampler(diffusion, t)
    plan.coefs[:, COEFS.index("w")] = guidance_scales(sampler, t, diffusion.num_timesteps)
    return plan
