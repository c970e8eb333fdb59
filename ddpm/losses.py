"""Per-example denoising losses with SNR-based weights.

The weights are [T] float64 tables indexed by t; the elementwise distances work on
MindSpore tensors inside the compiled train step.
"""

from __future__ import annotations

import numpy as np
from mindspore import ops

from ddpm.registry import ConfigError, Registry

LOSSES = Registry("loss")


@LOSSES.register("mse")
def mse(diff, delta: float = 1.0):
    return diff * diff


@LOSSES.register("l1")
def l1(diff, delta: float = 1.0):
    return ops.abs(diff)


@LOSSES.register("huber")
def huber(diff, delta: float = 1.0):
    """Huber / smooth-L1: 0.5 d^2 / delta inside |d| < delta, |d| - 0.5 delta outside."""
    abs_diff = ops.abs(diff)
    return ops.where(abs_diff < delta, 0.5 * diff * diff / delta, abs_diff - 0.5 * delta)


def p2_weights(snr: np.ndarray, gamma: float, k: float) -> np.ndarray:
    """Choi et al. 2022, eq. 8: lambda'_t = (k + SNR(t))^-gamma; gamma = 0 is uniform."""
    if gamma != 0 and k <= 0 and np.any(snr == 0):
        raise ConfigError("loss.p2_k must be > 0 when SNR reaches 0 (zero terminal SNR)")
    return (k + snr) ** -gamma


def min_snr_weights(snr: np.ndarray, gamma: float, objective: str) -> np.ndarray:
    """Hang et al. 2023: min(SNR, gamma) expressed for each objective's regression target."""
    clipped = np.minimum(snr, gamma)
    if objective == "pred_noise":
        return clipped / np.maximum(snr, 1e-20)
    if objective == "pred_v":
        return clipped / (snr + 1.0)
    return clipped


def loss_weights(
    snr: np.ndarray,
    objective: str,
    p2_gamma: float = 0.0,
    p2_k: float = 1.0,
    min_snr_gamma: float | None = None,
) -> np.ndarray:
    """The per-timestep weight table [T] applied to each example's mean loss."""
    weights = p2_weights(snr, p2_gamma, p2_k)
    if min_snr_gamma is not None:
        weights = weights * min_snr_weights(snr, min_snr_gamma, objective)
    return weights
