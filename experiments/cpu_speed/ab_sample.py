"""The sampling network's forward under two plane-size gates for the dense-convolution
kernels, alternating in one process (experiments/cpu_speed.md, "Small planes").

    [GATE=NAME:A,B] python experiments/cpu_speed/ab_sample.py <run dir> [N, default 1000]

Loads the run twice and compiles each network graph right after setting the gate GATE
(as in ab_gate.py; default KERNEL_MIN_PIXELS:196,16), then times 8 forwards of each at
batch N, alternating, and prints the largest difference of their outputs and the median
ratio.
"""

import sys
import time

import ddpm  # noqa: F401  (sets the oneDNN and OpenMP variables first)

# isort: split
import numpy as np
from ab_gate import gates, set_gate
from forward_profile import sampling_row

from ddpm.api import load_run


def main() -> None:
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    calls, outputs = {}, {}
    for name, gate in gates().items():
        set_gate(name, gate)
        network, args = sampling_row(load_run(sys.argv[1]), n)
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
