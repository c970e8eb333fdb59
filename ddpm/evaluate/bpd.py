"""Test-set negative ELBO in bits/dim, as improved-diffusion's calc_bpd_loop computes it.

The network only supplies x_0 predictions (through the compiled ReverseStep, so they are
clipped exactly as in sampling); the bound itself is float64 numpy from ddpm.likelihood.
A subset of timesteps keeps it cheap: the sum over t is estimated from k of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mindspore import Tensor

from ddpm.diffusion import GaussianDiffusion, q_sample
from ddpm.likelihood import model_log_variance, prior_bpd, timestep_subset, vb_term_bpd
from ddpm.train_step import ReverseStep


@dataclass
class NegativeElbo:
    images: np.ndarray  # [N, C, H, W] in [-1, 1] on the 8-bit grid
    diffusion: GaussianDiffusion
    timesteps: int | None = 50  # k of T timesteps (None: all of them)
    variance: str = "large"  # the fixed reverse variance: beta_t or beta~_t
    seed: int = 0  # the forward-process noise; fixed, so every evaluation sees the same x_t

    def __call__(self, step: ReverseStep, batch: int) -> dict[str, float | list[float]]:
        """bpd (mean over images of L_T + sum_t L_t), its prior and decoder parts, the terms."""
        ts, weights = timestep_subset(self.diffusion.num_timesteps, self.timesteps)
        log_var = model_log_variance(self.diffusion, self.variance)
        rng = np.random.default_rng(self.seed)
        terms = np.zeros((len(self.images), len(ts)))
        for start in range(0, len(self.images), batch):
            x_start = self.images[start : start + batch].astype(np.float64)
            for j, t in enumerate(ts):
                noise = rng.standard_normal(x_start.shape)
                x_t = q_sample(
                    x_start,
                    noise,
                    self.diffusion.sqrt_alphas_cumprod[t],
                    self.diffusion.sqrt_one_minus_alphas_cumprod[t],
                )
                x0_hat = self._predict_x0(step, x_t, int(t), batch)
                terms[start : start + len(x_start), j] = vb_term_bpd(
                    self.diffusion, x_start, x_t, x0_hat, int(t), log_var
                )
        prior = prior_bpd(self.diffusion, self.images.astype(np.float64))
        total = prior + terms @ weights
        return {
            "bpd": float(total.mean()),
            "bpd_prior": float(prior.mean()),
            "bpd_decoder": float(terms[:, 0].mean()),
            "bpd_timesteps": [int(t) for t in ts],
            "bpd_terms": terms.mean(axis=0).round(6).tolist(),
        }

    def _predict_x0(self, step: ReverseStep, x_t: np.ndarray, t: int, batch: int) -> np.ndarray:
        """The network's clipped x_0 at timestep t; a short last batch is padded to `batch`."""
        n = len(x_t)
        padded = np.concatenate([x_t, np.repeat(x_t[-1:], batch - n, axis=0)]).astype(np.float32)
        d = self.diffusion
        coefs = np.array(
            [d.sqrt_alphas_cumprod[t], d.sqrt_one_minus_alphas_cumprod[t], 0, 0, 0], np.float32
        )
        _, x0 = step(
            Tensor(padded),
            Tensor(np.full(batch, t, np.int32)),
            Tensor(coefs),
            Tensor(np.zeros_like(padded)),
        )
        return x0.asnumpy()[:n].astype(np.float64)
