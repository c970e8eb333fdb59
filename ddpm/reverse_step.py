"""The reverse process: the compiled ReverseStep and the host loop that drives it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from ddpm.objectives import Objective
from ddpm.samplers import SamplerPlan


class ReverseStep(nn.Cell):
    """x_prev = a * x0_hat + c * x0_hat_prev + b * x_t + sigma * z, with x0_hat optionally
    clipped; returns (x_prev, x0_hat). The columns of `coefs` are ddpm.samplers.COEFS."""

    def __init__(self, network: nn.Cell, objective: Objective, clip_denoised: bool) -> None:
        super().__init__()
        self.network, self.objective, self.clip = network, objective, clip_denoised

    def construct(self, x_t: Tensor, t: Tensor, coefs: Tensor, noise: Tensor, x0_prev: Tensor):
        sqrt_ab, sqrt_1m_ab, a, b, c, sigma = (coefs[i] for i in range(6))
        x0 = self.objective.predict_x0(self.network(x_t, t), x_t, sqrt_ab, sqrt_1m_ab)
        if self.clip:
            x0 = ops.clamp(x0, -1.0, 1.0)
        return a * x0 + c * x0_prev + b * x_t + sigma * noise, x0


def p_sample_loop(
    step: ReverseStep,
    plan: SamplerPlan,
    shape: tuple[int, int, int, int],
    seed: int,
    on_step: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Draw samples [B, C, H, W] in [-1, 1], starting from x_T ~ N(0, I).

    All per-step tensors are built before the loop; `on_step(i, x_i)` (for GIFs) is the
    only reason the loop copies intermediate images back to the host.
    """
    rng = np.random.default_rng(seed)
    batch = shape[0]
    t_batches = [Tensor(np.full(batch, t, np.int32)) for t in plan.timesteps]
    coefs = [Tensor(row.astype(np.float32)) for row in plan.coefs]
    x = Tensor(rng.standard_normal(shape, dtype=np.float32))
    x0 = ops.zeros_like(x)  # no previous prediction at the first step
    for i in range(plan.num_steps):
        noise = Tensor(rng.standard_normal(shape, dtype=np.float32), mstype.float32)
        x, x0 = step(x, t_batches[i], coefs[i], noise, x0)
        if on_step is not None:
            on_step(i, x.asnumpy())
    return np.clip(x.asnumpy(), -1.0, 1.0)
