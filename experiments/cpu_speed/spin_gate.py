"""Train steps at two kernel-thread spins, paired in one process (experiments/cpu_speed.md,
"The runtime's spinning").

    SPINS=A,B python experiments/cpu_speed/spin_gate.py [overrides...]

Builds the default recipe's budget-probe trainer once, then for PAIRS rounds (default 50)
runs K steps (default 5) at each runtime.kernel_spin in turn, alternating which goes first,
each after one step that settles the threads. "null" is MindSpore's own spin (3,000). Prints
the median step at each, the per-round ratio B / A with its quartiles, the mean step at each
and the ratio of the means, and each setting's
user and system CPU time over its steps. DMA_LATENCY_US=N holds a PM QoS request of N us on
/dev/cpu_dma_latency for the run (root only; 0 keeps idle CPUs polling instead of halting).
"""

import os
import struct
import sys

import ddpm  # noqa: F401  (loads the spin hook before MindSpore)

# isort: split
import numpy as np
from loop_rate import settled_steps, timed_run

from ddpm.runtime import spin
from ddpm.training.build import build_parts, build_probe


def main() -> None:
    if "DMA_LATENCY_US" in os.environ:  # held open until the process ends
        qos = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
        os.write(qos, struct.pack("i", int(os.environ["DMA_LATENCY_US"])))
    spins = [None if s == "null" else int(s) for s in os.environ.get("SPINS", "null,1").split(",")]
    rounds, k = int(os.environ.get("PAIRS", "50")), int(os.environ.get("K", "5"))
    run = timed_run(sys.argv[1:])
    trainer = build_probe(build_parts(run))
    stream = trainer.stream()
    for _ in range(3):
        trainer.train_one(next(stream))
    steps = {s: [] for s in spins}
    cpu = {s: np.zeros(2) for s in spins}
    for i in range(rounds):
        for count in spins[:: 1 if i % 2 == 0 else -1]:
            spin.set_kernel_spin(count)
            seconds, used = settled_steps(trainer, stream, k)
            steps[count].append(seconds)
            cpu[count] += used
    a, b = (np.array(steps[s]) for s in spins)
    q = np.percentile(b / a, [25, 75])
    medians = ", ".join(
        f"{s}: {1000 * np.median(t):.1f}" for s, t in zip(spins, (a, b), strict=True)
    )
    print(f"median step (ms): {medians}")
    print(f"per-round ratio {np.median(b / a):.3f} (quartiles {q[0]:.3f}-{q[1]:.3f})")
    # The mean keeps the slow rounds that the median drops: a time budget trains at the mean.
    means = f"{1000 * a.mean():.1f}, {1000 * b.mean():.1f}"
    print(f"mean step (ms): {means}; ratio {b.mean() / a.mean():.3f}")
    for count in spins:
        user, system = cpu[count]
        share = system / (user + system)
        print(f"kernel_spin={count}: user {user:.1f} s, system {system:.1f} s, share {share:.3f}")


if __name__ == "__main__":
    main()
