"""The sampling network's forward under two plane-size gates for the dense-convolution
kernels, alternating in one process (experiments/cpu_speed.md, "Small planes").

    python experiments/cpu_speed/ab_sample.py <run dir> [N, default 1000]

Loads the run twice and compiles each network graph right after setting
ddpm.nn.kernels.layers.KERNEL_MIN_PIXELS (see ab_gate.py), then times 8 forwards of each at
batch N, alternating, and prints the largest difference of their outputs and the median
ratio.
"""

import sys
import time

import ddpm  # noqa: F401  (sets the oneDNN and OpenMP variables first)

# isort: split
import numpy as np
from mindspore import Tensor

import ddpm.nn.kernels.layers as layers
from ddpm.api import load_run
from ddpm.sampling.reverse_step import reverse_process

GATES = {"from 14x14": 14 * 14, "from 4x4": 4 * 4}


def main() -> None:
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    calls, outputs = {}, {}
    for name, gate in GATES.items():
        layers.KERNEL_MIN_PIXELS = gate
        run = load_run(sys.argv[1])
        step, plan = reverse_process(run.model.network, run.model.diffusion, run.sampler())
        network = step.parts().network
        x = np.random.default_rng(0).standard_normal((n, *run.image_shape), np.float32)
        args = (
            Tensor(x),
            Tensor(np.full(n, plan.labels[5], plan.labels.dtype)),
            Tensor(np.arange(n, dtype=np.int32) % max(len(run.classes or []), 1)),
            Tensor(plan.coefs[5].astype(np.float32)),
        )
        outputs[name] = network(*args).asnumpy()  # compiles with this gate
        calls[name] = (network, args)
    old, new = outputs.values()
    print(f"largest |difference| of the outputs: {float(np.abs(new - old).max()):.2e}")
    times = {name: [] for name in calls}
    for i in range(8):
        for name in list(calls)[:: 1 if i % 2 == 0 else -1]:
            network, args = calls[name]
            start = time.perf_counter()
            network(*args).asnumpy()
            times[name].append(time.perf_counter() - start)
    for name, t in times.items():
        print(f"{name}: " + ", ".join(f"{s:.3f}" for s in t) + " s")
    old, new = (np.array(t) for t in times.values())
    print(f"median ratio: {float(np.median(new / old)):.3f}")


if __name__ == "__main__":
    main()
