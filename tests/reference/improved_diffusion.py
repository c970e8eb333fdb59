"""improved-diffusion's learned-variance formulas (openai/improved-diffusion,
improved_diffusion/gaussian_diffusion.py, losses.py and respace.py), transcribed from torch to
float64 numpy line by line, for tests/test_learned_variance.py to check ddpm against.

Only the pieces the "learned_range" variance with the eps objective uses: the posterior,
p_mean_variance, _vb_terms_bpd, training_losses (LossType.RESCALED_MSE), p_sample and
the respaced betas of SpacedDiffusion. Arrays are [B, C, H, W]; t is an int array [B].
"""

from __future__ import annotations

import numpy as np


def normal_kl(mean1, logvar1, mean2, logvar2):  # losses.normal_kl
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + np.exp(logvar1 - logvar2)
        + ((mean1 - mean2) ** 2) * np.exp(-logvar2)
    )


def approx_standard_normal_cdf(x):  # losses.approx_standard_normal_cdf
    return 0.5 * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * np.power(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):  # losses.py
    centered_x = x - means
    inv_stdv = np.exp(-log_scales)
    plus_in = inv_stdv * (centered_x + 1.0 / 255.0)
    cdf_plus = approx_standard_normal_cdf(plus_in)
    min_in = inv_stdv * (centered_x - 1.0 / 255.0)
    cdf_min = approx_standard_normal_cdf(min_in)
    log_cdf_plus = np.log(np.clip(cdf_plus, 1e-12, None))
    log_one_minus_cdf_min = np.log(np.clip(1.0 - cdf_min, 1e-12, None))
    cdf_delta = cdf_plus - cdf_min
    return np.where(
        x < -0.999,
        log_cdf_plus,
        np.where(x > 0.999, log_one_minus_cdf_min, np.log(np.clip(cdf_delta, 1e-12, None))),
    )


def mean_flat(x):
    return x.reshape(len(x), -1).mean(axis=1)


class ImprovedDiffusion:
    """GaussianDiffusion(model_mean_type=EPSILON, model_var_type=LEARNED_RANGE)."""

    def __init__(self, betas: np.ndarray) -> None:
        self.betas = betas = np.asarray(betas, np.float64)
        self.num_timesteps = len(betas)
        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas, axis=0)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        self.posterior_variance = (
            betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        )
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
        )
        self.posterior_mean_coef1 = (
            betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        )
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        )

    @staticmethod
    def _extract(arr, t):
        return arr[t][:, None, None, None]

    def q_sample(self, x_start, t, noise):
        e = self._extract
        return e(self.sqrt_alphas_cumprod, t) * x_start + (
            e(self.sqrt_one_minus_alphas_cumprod, t) * noise
        )

    def q_posterior_mean_variance(self, x_start, x_t, t):
        e = self._extract
        mean = e(self.posterior_mean_coef1, t) * x_start + e(self.posterior_mean_coef2, t) * x_t
        return mean, e(self.posterior_variance, t), e(self.posterior_log_variance_clipped, t)

    def p_mean_variance(self, model_output, x, t, clip_denoised):
        """From the model's output [B, 2C] (eps, v): mean, log_variance, pred_xstart."""
        channels = x.shape[1]
        eps, model_var_values = model_output[:, :channels], model_output[:, channels:]
        min_log = self._extract(self.posterior_log_variance_clipped, t)
        max_log = self._extract(np.log(self.betas), t)
        frac = (model_var_values + 1) / 2
        model_log_variance = frac * max_log + (1 - frac) * min_log
        pred_xstart = self._extract(self.sqrt_recip_alphas_cumprod, t) * x - (
            self._extract(self.sqrt_recipm1_alphas_cumprod, t) * eps
        )
        if clip_denoised:
            pred_xstart = np.clip(pred_xstart, -1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": mean, "log_variance": model_log_variance, "pred_xstart": pred_xstart}

    def vb_terms_bpd(self, model_output, x_start, x_t, t, clip_denoised):
        true_mean, _, true_log_variance_clipped = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model_output, x_t, t, clip_denoised)
        kl = normal_kl(true_mean, true_log_variance_clipped, out["mean"], out["log_variance"])
        kl = mean_flat(kl) / np.log(2.0)
        decoder_nll = -discretized_gaussian_log_likelihood(
            x_start, means=out["mean"], log_scales=0.5 * out["log_variance"]
        )
        decoder_nll = mean_flat(decoder_nll) / np.log(2.0)
        return np.where(t == 0, decoder_nll, kl)

    def training_losses(self, model_output, x_start, t, noise):
        """LossType.RESCALED_MSE: mse + vb * T / 1000, the mean frozen inside vb."""
        x_t = self.q_sample(x_start, t, noise)
        vb = self.vb_terms_bpd(model_output, x_start, x_t, t, clip_denoised=False)
        vb = vb * self.num_timesteps / 1000.0
        mse = mean_flat((noise - model_output[:, : x_start.shape[1]]) ** 2)
        return {"loss": mse + vb, "mse": mse, "vb": vb}

    def p_sample(self, model_output, x, t, noise):
        out = self.p_mean_variance(model_output, x, t, clip_denoised=True)
        nonzero_mask = (t != 0).astype(np.float64)[:, None, None, None]
        return out["mean"] + nonzero_mask * np.exp(0.5 * out["log_variance"]) * noise


def respaced_betas(alphas_cumprod: np.ndarray, use_timesteps) -> np.ndarray:
    """respace.SpacedDiffusion.__init__: the betas of the kept timesteps, ascending."""
    last_alpha_cumprod, new_betas = 1.0, []
    for i, alpha_cumprod in enumerate(alphas_cumprod):
        if i in use_timesteps:
            new_betas.append(1 - alpha_cumprod / last_alpha_cumprod)
            last_alpha_cumprod = alpha_cumprod
    return np.array(new_betas)
