"""Per-example denoising losses with SNR-based weights.

A loss option is a cell mapping the residual net(x_t, t) - target to an elementwise
distance inside the compiled train step. The weights every loss shares are [T] float64
tables indexed by t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from mindspore import Tensor, nn, ops

from ddpm.config.registry import ConfigError, Registry
from ddpm.config.schema import NonNegativeFloat, PositiveFloat, Range


@dataclass(frozen=True)
class LossWeighting:
    """The per-timestep weights every loss takes."""

    p2_gamma: NonNegativeFloat  # p2 (Choi et al. 2022): (k + SNR)^-gamma; 0 = uniform
    p2_k: NonNegativeFloat
    min_snr_gamma: Annotated[float | None, Range(gt=0)]  # min-SNR (Hang et al. 2023); null = off


LOSSES = Registry("loss", shared=LossWeighting)


@LOSSES.register("mse")
class MSE(nn.Cell):
    def construct(self, diff: Tensor) -> Tensor:
        return diff * diff


@LOSSES.register("l1")
class L1(nn.Cell):
    def construct(self, diff: Tensor) -> Tensor:
        return ops.abs(diff)


@LOSSES.register("huber")
class Huber(nn.Cell):
    """Huber / smooth-L1: 0.5 d^2 / delta inside |d| < delta, |d| - 0.5 delta outside."""

    def __init__(self, *, delta: PositiveFloat) -> None:
        super().__init__()
        self.delta = delta

    def construct(self, diff: Tensor) -> Tensor:
        abs_diff = ops.abs(diff)
        inside = 0.5 * diff * diff / self.delta
        return ops.where(abs_diff < self.delta, inside, abs_diff - 0.5 * self.delta)


def p2_weights(snr: np.ndarray, gamma: float, k: float) -> np.ndarray:
    """Choi et al. 2022, eq. 8: lambda'_t = (k + SNR(t))^-gamma; gamma = 0 is uniform."""
    if gamma != 0 and k <= 0 and np.any(snr == 0):
        raise ConfigError("loss.p2_k must be > 0 when SNR reaches 0 (zero terminal SNR)")
    return (k + snr) ** -gamma


def loss_weights(snr: np.ndarray, objective, weighting: LossWeighting) -> np.ndarray:
    """The per-timestep weight table [T] applied to each example's mean loss."""
    weights = p2_weights(snr, weighting.p2_gamma, weighting.p2_k)
    if weighting.min_snr_gamma is not None:
        weights = weights * objective.min_snr_weight(snr, weighting.min_snr_gamma)
    return weights
