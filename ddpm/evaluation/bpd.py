"""Test-set negative ELBO in bits/dim, as improved-diffusion's calc_bpd_loop computes it.

The network supplies x_0 predictions (through the compiled ReverseStep, so they are
clipped exactly as in sampling) and, where it learns its variance (ddpm.diffusion.variance),
Sigma_theta per pixel; a class-conditional network is asked for its null-class
prediction, so the bound is that of p(x). The bound itself is float64 numpy from
ddpm.diffusion.likelihood.
A subset of timesteps keeps it cheap: the sum over t is interpolated from k of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from mindspore import Tensor

from ddpm.diffusion.gaussian import GaussianDiffusion, q_sample
from ddpm.diffusion.likelihood import (
    model_log_variance,
    prior_bpd,
    sum_over_timesteps,
    timestep_subset,
    vb_term_bpd,
)
from ddpm.diffusion.samplers import COEFS, x0_coefs
from ddpm.diffusion.variance import log_variance_range
from ddpm.sampling.reverse_step import ReverseStep


@dataclass
class NegativeElbo:
    images: np.ndarray  # [N, C, H, W] in [-1, 1] on the 8-bit grid
    diffusion: GaussianDiffusion
    timesteps: int | None = 50  # k of T timesteps (None: all of them)
    variance: str = "large"  # the fixed reverse variance, beta_t or beta~_t, if not learned
    seed: int = 0  # the forward-process noise: every evaluation sees the same x_t
    _learned_steps: dict = field(default_factory=dict, repr=False)

    def __call__(self, step: ReverseStep, batch: int) -> dict[str, float | list[float]]:
        """bpd (the image mean of L_T + sum_t L_t), its prior and decoder parts, the terms."""
        ts = timestep_subset(self.diffusion.num_timesteps, self.timesteps)
        log_var = model_log_variance(self.diffusion, self.variance)
        step = self._bound_step(step)
        x_all = self.images.astype(np.float64)
        terms = np.stack([self._terms_at(step, x_all, int(t), batch, log_var) for t in ts], 1)
        prior = float(prior_bpd(self.diffusion, x_all).mean())
        mean_terms = terms.mean(axis=0)  # the bound is linear in the terms: average first
        return {
            "bpd": prior + sum_over_timesteps(ts, mean_terms, self.diffusion.num_timesteps),
            "bpd_prior": prior,
            "bpd_decoder": float(mean_terms[0]),
            "bpd_timesteps": [int(t) for t in ts],
            "bpd_terms": mean_terms.round(6).tolist(),
        }

    @cached_property
    def _log_variance_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The bounds [T] of a learned log Sigma_theta (ddpm.diffusion.variance)."""
        return log_variance_range(self.diffusion.betas)

    def _bound_step(self, step: ReverseStep) -> ReverseStep:
        """`step`, or for a learned variance a step of its network that also returns
        Sigma_theta, compiled once per network."""
        if self.diffusion.variance is None:
            return step
        key = id(step.network)
        if key not in self._learned_steps:
            variance = self.diffusion.variance
            self._learned_steps[key] = ReverseStep(
                step.network, step.objective, step.clip, 0.0, variance
            )
        return self._learned_steps[key]

    def _terms_at(
        self, step: ReverseStep, x_all: np.ndarray, t: int, batch: int, log_var: np.ndarray
    ) -> np.ndarray:
        """L_t of every image [N]; eps depends on (seed, t) only, not on the batch size."""
        d = self.diffusion
        noise = np.random.default_rng((self.seed, t)).standard_normal(x_all.shape)
        x_t = q_sample(x_all, noise, d.sqrt_alphas_cumprod[t], d.sqrt_one_minus_alphas_cumprod[t])
        chunks = []
        for i in range(0, len(x_all), batch):
            x0_hat, model_log_var = self._predict(step, x_t[i : i + batch], t, batch)
            if model_log_var is None:
                model_log_var = log_var[t]
            chunks.append(
                vb_term_bpd(d, x_all[i : i + batch], x_t[i : i + batch], x0_hat, t, model_log_var)
            )
        return np.concatenate(chunks)

    def _predict(
        self, step: ReverseStep, x_t: np.ndarray, t: int, batch: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The network's clipped x_0 at timestep t and, for a learned variance, log Sigma_theta
        per element (else None); a short last batch is padded to `batch`.

        A learned step's row has a = b = c = 0 and sigma = 1 and is fed noise 1, so its
        x_prev is Sigma_theta^(1/2): one network call gives both."""
        n = len(x_t)
        padded = np.concatenate([x_t, np.repeat(x_t[-1:], batch - n, axis=0)]).astype(np.float32)
        zeros = Tensor(np.zeros_like(padded))
        row = x0_coefs(self.diffusion, t)
        learned = step.variance is not None
        if learned:
            row[COEFS.index("sigma")] = 1.0
            row = np.append(row, [bound[t] for bound in self._log_variance_range])
        null = Tensor(np.full(batch, step.null_class, np.int32))  # p(x): the null class
        ts = Tensor(np.full(batch, t, np.int32))
        noise = Tensor(np.ones_like(padded)) if learned else zeros
        std, x0 = step(Tensor(padded), ts, null, Tensor(row.astype(np.float32)), noise, zeros)
        log_var = 2.0 * np.log(std.asnumpy()[:n].astype(np.float64)) if learned else None
        return x0.asnumpy()[:n].astype(np.float64), log_var
