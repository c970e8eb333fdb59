"""The host-side reverse-process loop around the compiled ReverseStep."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from mindspore import Tensor
from mindspore import dtype as mstype

from ddpm.sampling import SamplerPlan
from ddpm.train_step import ReverseStep


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
    for i in range(plan.num_steps):
        noise = Tensor(rng.standard_normal(shape, dtype=np.float32), mstype.float32)
        x, _ = step(x, t_batches[i], coefs[i], noise)
        if on_step is not None:
            on_step(i, x.asnumpy())
    return np.clip(x.asnumpy(), -1.0, 1.0)
