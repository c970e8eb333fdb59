"""The cost of a guided reverse step against a plain one, for experiments/cpu_speed.md.

    python experiments/cpu_speed/guided_cost.py <run dir> [batch, default 1000]

On a class-conditional run with a guidance interval, times in turns (4 rounds, after one
call of each to compile): the guided step (one network call on the doubled batch), the
plain step (one call on the batch) and the plain step twice (the conditional and the
null-class outputs from two calls), and prints each one's seconds and median.
"""

import sys
import time

import ddpm  # noqa: F401  (sets the oneDNN and OpenMP variables first)

# isort: split
import numpy as np
from mindspore import Tensor, ops

from ddpm.api import load_run
from ddpm.sampling.reverse_step import reverse_process


def main() -> None:
    run = load_run(sys.argv[1])
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    model = run.model
    step, plan = reverse_process(model.network, model.diffusion, run.sampler())
    gi, pi = int(np.argmax(plan.guidance != 1.0)), int(np.argmax(plan.guidance == 1.0))
    guided, plain = step.at(float(plan.guidance[gi])), step.at(1.0)
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((batch, *run.image_shape), dtype=np.float32))
    t = Tensor(np.full(batch, plan.labels[gi], plan.labels.dtype))
    y = Tensor(np.arange(batch, dtype=np.int32) % len(run.classes))
    null = Tensor(np.full(batch, step.null_class, np.int32))
    c_guided, c_plain = (Tensor(plan.coefs[i].astype(np.float32)) for i in (gi, pi))
    zero = ops.zeros_like(x)
    calls = {
        "guided step (2B)": lambda: guided(x, t, y, c_guided, zero, zero),
        "plain step (B)": lambda: plain(x, t, y, c_plain, zero, zero),
        "plain step twice (B, B)": lambda: (
            plain(x, t, y, c_plain, zero, zero),
            plain(x, t, null, c_plain, zero, zero),
        )[1],
    }
    for call in calls.values():
        call()[0].asnumpy()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(4):
        for name, call in calls.items():
            start = time.perf_counter()
            call()[0].asnumpy()
            seconds[name].append(time.perf_counter() - start)
    for name, s in seconds.items():
        print(f"{name}: {' '.join(f'{v:.2f}' for v in s)} s, median {np.median(s):.2f} s")


if __name__ == "__main__":
    main()
