"""Train steps with the kernels' parallel regions on libgomp's threads and on MindSpore's
pool, paired in one process (experiments/cpu_speed.md, "OpenMP on MindSpore's pool").

    python experiments/cpu_speed/pool_gate.py [overrides...]

Builds the default recipe's budget-probe trainer twice, its kernels once with
runtime.kernel_pool=openmp and once with mindspore, then for PAIRS rounds (default 40) runs
K steps (default 5) of each variant in turn, the order rotating, each after one step that
settles the threads:
  openmp        libgomp's threads, kernel threads yielding (the defaults before the pool);
  pool          MindSpore's pool, kernel threads yielding;
  pool+pause    MindSpore's pool, each kernel-thread yield a spin of PAUSES (default 16)
                pause instructions (one in 64 followed by the system call).
With BUSY=n (default 0), n other processes spin on the CPU throughout, as a second job on
the machine would.
Prints each variant's median step, its per-round ratio to openmp with quartiles, the ratio
of the mean steps (what a time budget trains at), and its system share of the CPU time.
"""

import ctypes
import os
import subprocess
import sys

import ddpm  # noqa: F401  (loads the runtime hook before MindSpore)

# isort: split
import numpy as np
from loop_rate import settled_steps, timed_run

from ddpm.nn import kernels
from ddpm.nn.kernels import build
from ddpm.runtime import spin
from ddpm.training.build import build_parts, build_probe


def busy(n: int) -> list[subprocess.Popen]:
    """n processes that keep a core busy until killed."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def main() -> None:
    rounds, k = int(os.environ.get("PAIRS", "40")), int(os.environ.get("K", "5"))
    pauses = int(os.environ.get("PAUSES", "16"))
    run = timed_run(sys.argv[1:])
    bf16 = run.runtime.conv_precision == "bfloat16"
    trainers = {}
    for pool in (False, True):
        kernels.use(True, bf16=bf16, pool=pool)
        trainers[pool] = build_probe(build_parts(run))
    variants = {"openmp": (False, 0), "pool": (True, 0), "pool+pause": (True, pauses)}
    streams = {pool: t.stream() for pool, t in trainers.items()}
    for pool, trainer in trainers.items():
        for _ in range(3):
            trainer.train_one(next(streams[pool]))
    names = list(variants)
    steps = {n: [] for n in names}
    cpu = {n: np.zeros(2) for n in names}
    others = busy(int(os.environ.get("BUSY", "0")))
    try:
        for i in range(rounds):
            for name in names[i % 3 :] + names[: i % 3]:
                pool, count = variants[name]
                spin.set_kernel_pause(count)
                seconds, used = settled_steps(trainers[pool], streams[pool], k)
                steps[name].append(seconds)
                cpu[name] += used
    finally:
        for other in others:
            other.kill()
    base = np.array(steps["openmp"])
    for name in names:
        x = np.array(steps[name])
        ratio, (user, system) = x / base, cpu[name]
        q = np.percentile(ratio, [25, 75])
        print(
            f"{name}: median step {1000 * np.median(x):.1f} ms, per-round ratio "
            f"{np.median(ratio):.3f} ({q[0]:.3f}-{q[1]:.3f}), mean ratio "
            f"{x.mean() / base.mean():.3f}, system share {system / (user + system):.3f}"
        )
    lib = ctypes.CDLL(str(build.library(True)))
    print(
        f"pool regions {lib.PoolRegions()}, run alone {lib.PoolRegionsAlone()}, "
        f"unlaunched {lib.PoolRegionsUnlaunched()}"
    )


if __name__ == "__main__":
    main()
