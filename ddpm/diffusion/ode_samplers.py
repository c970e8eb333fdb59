"""Samplers of the continuous formulations (ddpm.diffusion.formulations) as coefficient
tables.

EDM's probability-flow ODE in sigma, dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al.
2022, eq. 3 with s = 1), and the flow-matching ODE in t, dx/dt = v = (x - D(x; t)) / t, have
the same form, so one set of solvers serves both. Each solver row evaluates D at one level
and writes

    x_next = a * D + c * D_prev + b * x + noise * z,

with D_prev the previous row's D, as the DDPM samplers do (ddpm.diffusion.samplers). From
level s to s' (s' > 0; the step to s' = 0 is Euler, x' = D):
- Euler: a = 1 - s'/s, b = s'/s.
- Heun (EDM Algorithm 1): a predictor row, Euler to s' (x~), then at s' a corrector row
  x' = x + (s' - s) (d + d~) / 2. Written in x~, D and D~ it is x' = x~ + m (D - D~),
  m = (s' - s) / (2 s'): b = 1, c = m, a = -m.
- Midpoint: a predictor row, Euler to s_m = (s + s') / 2 (x_m), then at s_m the full step
  with the slope there, x' = x + (s' - s)(x_m - D_m) / s_m, which is x' = (s'/s_m) x_m +
  (1 - s/s_m) D + ((s - s')/s_m) D_m.
EDM's stochastic churn (Algorithm 2) raises level s_i to s^_i = s_i (1 + gamma_i) before
its step, gamma_i = min(S_churn / N, sqrt(2) - 1) for s_i in [S_min, S_max]: the noise
column of the row before adds S_noise sqrt(s^_i^2 - s_i^2) z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddpm.config.errors import ConfigError
from ddpm.config.registry import Option
from ddpm.config.schema import NonNegativeFloat, PositiveFloat
from ddpm.diffusion.formulations import EDM, FlowMatching, Formulation
from ddpm.diffusion.samplers import SAMPLERS

METHODS = ("euler", "heun", "midpoint")
# The columns of an ODE plan's table, in order.
ODE_COEFS = ("c_in", "c_noise", "c_skip", "c_out", "a", "b", "c", "noise", "w")


@dataclass(frozen=True)
class Churn:
    """EDM's stochastic sampling (Algorithm 2); S_churn = 0 is the deterministic ODE."""

    S_churn: float = 0.0
    S_min: float = 0.0
    S_max: float = float("inf")
    S_noise: float = 1.0

    def gammas(self, levels: np.ndarray) -> np.ndarray:
        """gamma_i of levels s_0..s_{N-1}."""
        n = len(levels)
        gamma = min(self.S_churn / max(n, 1), np.sqrt(2.0) - 1.0)
        inside = (levels >= self.S_min) & (levels <= self.S_max)
        return np.where(inside, gamma, 0.0)


@dataclass(frozen=True)
class ODEPlan:
    """levels [S] at which each row evaluates D, coefs [S, ODE_COEFS] and the scale of
    the starting noise, x_0 ~ N(0, init_scale^2 I)."""

    levels: np.ndarray
    coefs: np.ndarray
    init_scale: float

    @property
    def num_steps(self) -> int:
        return len(self.levels)

    @property
    def guidance(self) -> np.ndarray:
        return self.coefs[:, ODE_COEFS.index("w")]

    @property
    def labels(self) -> np.ndarray:
        """[S] float32 noise labels, the network's time input at each row."""
        return self.coefs[:, ODE_COEFS.index("c_noise")].astype(np.float32)


def edm_levels(n: int, sigma_min: float, sigma_max: float, rho: float) -> np.ndarray:
    """sigma_0 > ... > sigma_{n-1} (Karras et al. 2022, eq. 5), then sigma_n = 0."""
    i = np.arange(n, dtype=np.float64)
    inv = 1.0 / rho
    ramp = sigma_max**inv + i / max(n - 1, 1) * (sigma_min**inv - sigma_max**inv)
    return np.append(ramp**rho, 0.0)


def flow_levels(n: int, shift: float, t_min: float = 0.0) -> np.ndarray:
    """t from 1 down to t_min over n steps, then 0, spaced by the time shift
    t -> shift t / (1 + (shift - 1) t) (Esser et al. 2024, eq. 23); shift 1 is uniform."""
    t = np.linspace(1.0, t_min, n) if t_min > 0 else np.linspace(1.0, 0.0, n + 1)[:-1]
    shifted = shift * t / (1.0 + (shift - 1.0) * t)
    return np.append(shifted, 0.0)


def _row(formulation: Formulation, s: float, a: float, b: float, c: float) -> list[float]:
    c_in, c_noise, c_skip, c_out = (float(v) for v in formulation.precondition(np.float64(s)))
    return [c_in, c_noise, c_skip, c_out, a, b, c, 0.0, 1.0]


def ode_plan(
    formulation: Formulation,
    levels: np.ndarray,
    method: str,
    churn: Churn | None = None,
    guidance: float = 1.0,
    interval: tuple[float, float] = (0.0, 1.0),
) -> ODEPlan:
    """The table of `method` over `levels` (descending, ending at 0): one row per Euler
    step and two per Heun or midpoint step (Euler for the last), with guidance scale
    `guidance` where the formulation's position of the row's level lies in `interval`."""
    if method not in METHODS:
        raise ValueError(f"unknown ODE method {method!r}; one of {METHODS}")
    churn = churn or Churn()
    s, nxt = levels[:-1], levels[1:]
    raised = s * (1.0 + churn.gammas(s))  # s^_i
    extra = churn.S_noise * np.sqrt(np.maximum(raised**2 - s**2, 0.0))
    rows: list[list[float]] = []
    row_levels: list[float] = []

    def add(level: float, a: float, b: float, c: float) -> None:
        rows.append(_row(formulation, level, a, b, c))
        row_levels.append(level)

    for i, (hat, s_next) in enumerate(zip(raised, nxt, strict=True)):
        if method == "euler" or s_next == 0.0:
            add(hat, 1.0 - s_next / hat, s_next / hat, 0.0)
        elif method == "heun":
            add(hat, 1.0 - s_next / hat, s_next / hat, 0.0)
            m = (s_next - hat) / (2.0 * s_next)
            add(s_next, -m, 1.0, m)
        else:
            mid = 0.5 * (hat + s_next)
            add(hat, 1.0 - mid / hat, mid / hat, 0.0)
            add(mid, (hat - s_next) / mid, s_next / mid, 1.0 - hat / mid)
        if i + 1 < len(s):
            rows[-1][ODE_COEFS.index("noise")] = extra[i + 1]
    coefs, levels_out = np.array(rows, np.float64), np.array(row_levels, np.float64)
    lo, hi = interval
    position = formulation.guidance_position(levels_out)
    coefs[:, ODE_COEFS.index("w")] = np.where((position > lo) & (position <= hi), guidance, 1.0)
    _, sigma_0 = formulation.path(np.float64(s[0]))
    return ODEPlan(levels_out, coefs, float(np.sqrt(sigma_0**2 + extra[0] ** 2)))


def sample_numpy(plan: ODEPlan, denoise, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """The plan run on the host with a denoiser D(x, level) -> x0 (float64; for checks)."""
    rng = np.random.default_rng(seed)
    x = plan.init_scale * rng.standard_normal(shape)
    d_prev = np.zeros(shape)
    a_i, b_i, c_i, n_i = (ODE_COEFS.index(k) for k in ("a", "b", "c", "noise"))
    for level, row in zip(plan.levels, plan.coefs, strict=True):
        d = denoise(x, level)
        x = row[a_i] * d + row[c_i] * d_prev + row[b_i] * x + row[n_i] * rng.standard_normal(shape)
        d_prev = d
    return x


@dataclass(frozen=True)
class ODEKeys:
    """The keys of the ODE samplers; churn applies to EDM, the shift to flow matching."""

    S_churn: NonNegativeFloat
    S_min: NonNegativeFloat
    S_max: NonNegativeFloat
    S_noise: PositiveFloat
    shift: PositiveFloat


def _method(name: str):
    def plan(formulation: Formulation, steps: int, **keys: float) -> tuple[np.ndarray, Churn]:
        """The levels and churn of this sampler for `formulation`."""
        churn = Churn(keys["S_churn"], keys["S_min"], keys["S_max"], keys["S_noise"])
        if isinstance(formulation, EDM):
            f = formulation
            return edm_levels(steps, f.sigma_min, f.sigma_max, f.rho), churn
        return flow_levels(steps, keys["shift"], formulation.t_min), churn

    plan.__name__ = f"{name}_plan"
    return SAMPLERS.register(name, schema=ODEKeys)(plan)


for _name in METHODS:
    _method(_name)


def check_sampler(built: Formulation | None, sampler: Option, name: str) -> None:
    """A sampler solves one formulation's reverse process (`built`, named `name`; None:
    DDPM); keys of the other are refused."""
    continuous = built is not None
    if continuous != (sampler.name in METHODS):
        ours = METHODS if continuous else [s for s in SAMPLERS.names() if s not in METHODS]
        raise ConfigError(
            f"sampler={sampler.name} does not sample formulation={name}; its "
            f"samplers are: {', '.join(ours)}"
        )
    if not continuous:
        return
    keys = sampler.params
    if not isinstance(built, EDM) and keys["S_churn"] > 0:
        raise ConfigError(f"sampler.S_churn={keys['S_churn']}: churn applies to formulation=edm")
    if not isinstance(built, FlowMatching) and keys["shift"] != 1.0:
        raise ConfigError(
            f"sampler.shift={keys['shift']}: the time shift applies to formulation=flow"
        )


def make_ode_plan(sampler: Option, formulation: Formulation) -> ODEPlan:
    """The table of a resolved ODE sampler option for `formulation`."""
    steps = sampler.shared.steps
    if not steps:
        raise ConfigError(f"sampler={sampler.name} needs sampler.steps (null means all T of DDPM)")
    lo, hi = sampler.shared.guidance_interval
    if lo >= hi:
        raise ConfigError(f"sampler.guidance_interval=[{lo}, {hi}] must have lo < hi")
    levels, churn = sampler(formulation, steps)
    return ode_plan(formulation, levels, sampler.name, churn, sampler.shared.guidance, (lo, hi))
