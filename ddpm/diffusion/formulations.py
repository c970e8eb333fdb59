"""Continuous-time formulations beside DDPM: EDM and flow matching.

Both write the noisy image as x = alpha x_0 + sigma eps and the denoiser in Karras et al.
2022's preconditioned form (Table 1),

    D(x; s) = c_skip(s) x + c_out(s) F(c_in(s) x; c_noise(s)),

so one training loss and one sampling step serve both: the network F regresses
F* = (x_0 - c_skip x) / c_out with the per-example weight lambda(s) c_out(s)^2, which is
lambda(s) ||D - x_0||^2 (EDM eq. 8), and the samplers (ddpm.diffusion.ode_samplers) combine
D at chosen levels. The host draws each example's level s and hands the compiled step a
row of LEVEL_COLUMNS per example; F* = p x_0 + q eps, with p = (1 - c_skip alpha) / c_out
and q = -c_skip sigma / c_out computed there in float64 (for flow matching exactly -1 and
1, where c_out = -t is near 0).

- EDM (Karras et al. 2022): x = x_0 + sigma eps, ln sigma ~ N(P_mean, P_std^2),
  c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), c_out = sigma sigma_data /
  sqrt(sigma^2 + sigma_data^2), c_in = 1 / sqrt(sigma^2 + sigma_data^2),
  c_noise = ln(sigma) / 4, lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2; so
  lambda c_out^2 = 1.
- Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023): x = (1 - t) x_0 +
  t eps, F predicts the velocity eps - x_0: c_skip = 1, c_out = -t, c_in = 1, c_noise = t,
  and the plain velocity loss (lambda c_out^2 = 1). t is uniform or logit-normal,
  t = sigmoid(u), u ~ N(m, s^2) (Esser et al. 2024, sec. 3.1).

Both noise labels are multiplied by `noise_label_scale`, since the U-Net's sinusoidal time
embedding was built for labels in DDPM's [0, 1000) range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ddpm.config.registry import Registry
from ddpm.config.schema import OneOf, PositiveFloat, Range

# The per-example row the compiled training step receives (ddpm.training.step).
LEVEL_COLUMNS = ("alpha", "sigma", "c_in", "c_noise", "target_x0", "target_eps", "weight")


FORMULATIONS = Registry("formulation")


@FORMULATIONS.register("ddpm")
def ddpm() -> None:
    """The discrete DDPM of the schedule and objective groups: no continuous formulation."""
    return None


class Formulation:
    """A continuous formulation: its training levels and its preconditioning."""

    name = ""
    terminal = 1.0  # the level sampling starts from

    def __init__(self, noise_label_scale: float) -> None:
        self.noise_label_scale = noise_label_scale

    def sample_levels(self, rng: np.random.Generator, batch: int) -> np.ndarray:
        """[batch] training levels."""
        raise NotImplementedError

    def path(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, sigma) of x = alpha x_0 + sigma eps at levels s."""
        raise NotImplementedError

    def precondition(self, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """(c_in, c_noise, c_skip, c_out) at levels s, c_noise already scaled."""
        raise NotImplementedError

    def loss_weight(self, s: np.ndarray) -> np.ndarray:
        """lambda(s) c_out(s)^2: the weight of ||F - F*||^2."""
        return np.ones_like(s)

    def position(self, s: np.ndarray) -> np.ndarray:
        """Where level s lies in [0, 1), 0 the cleanest: the loss quarters' axis."""
        raise NotImplementedError

    def guidance_position(self, s: np.ndarray) -> np.ndarray:
        """Where a sampling level lies in [0, 1], 1 the noisiest: the axis of a sampler's
        guidance_interval, as t/T is for DDPM."""
        raise NotImplementedError

    def display_levels(self, n: int) -> np.ndarray:
        """n levels from clean to the sampler's start, for the forward-process strip."""
        raise NotImplementedError

    def levels_table(self, s: np.ndarray) -> np.ndarray:
        """[len(s), LEVEL_COLUMNS] float32 rows for the training step."""
        alpha, sigma = self.path(s)
        c_in, c_noise, c_skip, c_out = self.precondition(s)
        p, q = (1.0 - c_skip * alpha) / c_out, -c_skip * sigma / c_out
        columns = (alpha, sigma, c_in, c_noise, p, q, self.loss_weight(s))
        return np.stack([np.asarray(c, np.float64) for c in columns], 1).astype(np.float32)

    def denoise(self, x: np.ndarray, s: float, out: np.ndarray) -> np.ndarray:
        """D(x; s) from a network output (numpy; for checks)."""
        _, _, c_skip, c_out = self.precondition(np.asarray(s, np.float64))
        return c_skip * x + c_out * out


@dataclass(frozen=True)
class EDMKeys:
    noise_label_scale: PositiveFloat  # the network's time input is this times c_noise
    sigma_data: PositiveFloat  # the data's standard deviation
    P_mean: float  # ln sigma ~ N(P_mean, P_std^2) in training
    P_std: PositiveFloat
    sigma_min: PositiveFloat  # the sampler's last nonzero level
    sigma_max: PositiveFloat  # its first level
    rho: PositiveFloat  # the spacing exponent of the sampler's levels (eq. 5)


@FORMULATIONS.register("edm", schema=EDMKeys)
class EDM(Formulation):
    name = "edm"

    def __init__(self, noise_label_scale, sigma_data, P_mean, P_std, sigma_min, sigma_max, rho):
        super().__init__(noise_label_scale)
        self.sigma_data, self.P_mean, self.P_std = sigma_data, P_mean, P_std
        self.sigma_min, self.sigma_max, self.rho = sigma_min, sigma_max, rho
        self.terminal = sigma_max

    def sample_levels(self, rng, batch):
        return np.exp(self.P_mean + self.P_std * rng.standard_normal(batch))

    def path(self, s):
        return np.ones_like(s), s

    def precondition(self, s):
        sd2, s2 = self.sigma_data**2, s**2
        c_skip = sd2 / (s2 + sd2)
        c_out = s * self.sigma_data / np.sqrt(s2 + sd2)
        c_in = 1.0 / np.sqrt(s2 + sd2)
        c_noise = np.log(s) / 4.0
        return c_in, self.noise_label_scale * c_noise, c_skip, c_out

    def lam(self, s: np.ndarray) -> np.ndarray:
        """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (Table 1)."""
        return (s**2 + self.sigma_data**2) / (s * self.sigma_data) ** 2

    def loss_weight(self, s):
        return self.lam(s) * self.precondition(s)[3] ** 2

    def position(self, s):
        """The training distribution's CDF at sigma: the quarters hold equal shares."""
        z = (np.log(s) - self.P_mean) / (self.P_std * math.sqrt(2.0))
        return np.clip(0.5 * (1.0 + np.vectorize(math.erf)(z)), 0.0, 1.0 - 1e-9)

    def display_levels(self, n):
        return np.geomspace(self.sigma_min, self.sigma_max, n)

    def guidance_position(self, s):
        """log sigma between sigma_min (0) and sigma_max (1)."""
        span = np.log(self.sigma_max / self.sigma_min)
        return np.clip(np.log(np.maximum(s, 1e-300) / self.sigma_min) / span, 0.0, 1.0)


@dataclass(frozen=True)
class FlowKeys:
    noise_label_scale: PositiveFloat  # the network's time input is this times c_noise
    t_distribution: Annotated[str, OneOf(("uniform", "logit_normal"))]
    logit_mean: float  # m of u ~ N(m, s^2), t = sigmoid(u)
    logit_std: PositiveFloat  # s
    t_min: Annotated[float, Range(ge=0, lt=1)]  # the sampler's last nonzero t


@FORMULATIONS.register("flow", schema=FlowKeys)
class FlowMatching(Formulation):
    name = "flow"

    def __init__(self, noise_label_scale, t_distribution, logit_mean, logit_std, t_min):
        super().__init__(noise_label_scale)
        self.t_distribution, self.logit_mean, self.logit_std = (
            t_distribution,
            logit_mean,
            logit_std,
        )
        self.t_min = t_min

    def sample_levels(self, rng, batch):
        if self.t_distribution == "uniform":
            return rng.uniform(1e-5, 1.0, batch)
        u = self.logit_mean + self.logit_std * rng.standard_normal(batch)
        return 1.0 / (1.0 + np.exp(-u))

    def path(self, s):
        return 1.0 - s, s

    def precondition(self, s):
        one = np.ones_like(s)
        return one, self.noise_label_scale * s, one, -s

    def position(self, s):
        return np.clip(s, 0.0, 1.0 - 1e-9)

    def display_levels(self, n):
        return np.linspace(0.0, 1.0, n)

    def guidance_position(self, s):
        return np.clip(s, 0.0, 1.0)
