"""What the network predicts: each objective owns its regression target, its inversion to
x_0 and its min-SNR loss weight.

The methods use arithmetic only, so they run on numpy arrays and, inside the compiled
steps, on MindSpore tensors alike. Coefficients are per example, e.g. [B, 1, 1, 1].
"""

from __future__ import annotations

import numpy as np

from ddpm.config.registry import ConfigError, Registry
from ddpm.diffusion.gaussian import velocity

OBJECTIVES = Registry("objective")


class Objective:
    """Interface: target(x_start, noise, sqrt_ab, sqrt_1m_ab), predict_x0(model_out, x_t, ...)."""

    name = ""
    defined_at_zero_snr = True  # whether x_0 can be recovered where alpha_bar_T = 0

    def target(self, x_start, noise, sqrt_ab, sqrt_1m_ab):
        raise NotImplementedError

    def predict_x0(self, model_out, x_t, sqrt_ab, sqrt_1m_ab):
        raise NotImplementedError

    def min_snr_weight(self, snr: np.ndarray, gamma: float) -> np.ndarray:
        """Hang et al. 2023: min(SNR, gamma) expressed for this objective's target, [T]."""
        raise NotImplementedError

    def check(self, alphas_cumprod: np.ndarray) -> None:
        if alphas_cumprod[-1] == 0.0 and not self.defined_at_zero_snr:
            raise ConfigError(
                f"zero terminal SNR makes {self.name} undefined at t=T (x_0 = x_t / 0); "
                "use objective=pred_v or objective=pred_x0 (Lin et al. 2023, sec. 3.2)"
            )


@OBJECTIVES.register("pred_noise")
class PredNoise(Objective):
    """eps-prediction (Ho et al. 2020)."""

    name, defined_at_zero_snr = "pred_noise", False

    def target(self, x_start, noise, sqrt_ab, sqrt_1m_ab):
        return noise

    def predict_x0(self, model_out, x_t, sqrt_ab, sqrt_1m_ab):
        return (x_t - sqrt_1m_ab * model_out) / sqrt_ab  # eq. 15 rearranged

    def min_snr_weight(self, snr: np.ndarray, gamma: float) -> np.ndarray:
        return np.minimum(snr, gamma) / np.maximum(snr, 1e-20)


@OBJECTIVES.register("pred_x0")
class PredX0(Objective):
    """The network predicts the clean image directly."""

    name = "pred_x0"

    def target(self, x_start, noise, sqrt_ab, sqrt_1m_ab):
        return x_start

    def predict_x0(self, model_out, x_t, sqrt_ab, sqrt_1m_ab):
        return model_out

    def min_snr_weight(self, snr: np.ndarray, gamma: float) -> np.ndarray:
        return np.minimum(snr, gamma)


@OBJECTIVES.register("pred_v")
class PredV(Objective):
    """v-prediction (Salimans & Ho 2022, sec. 4): v = sqrt(ab) eps - sqrt(1 - ab) x_0."""

    name = "pred_v"

    def target(self, x_start, noise, sqrt_ab, sqrt_1m_ab):
        return velocity(x_start, noise, sqrt_ab, sqrt_1m_ab)

    def predict_x0(self, model_out, x_t, sqrt_ab, sqrt_1m_ab):
        return sqrt_ab * x_t - sqrt_1m_ab * model_out

    def min_snr_weight(self, snr: np.ndarray, gamma: float) -> np.ndarray:
        return np.minimum(snr, gamma) / (snr + 1.0)
