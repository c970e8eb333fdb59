"""Seconds of p_sample_loop on a run, three calls (the first compiles), for
experiments/cpu_speed.md.

    python experiments/cpu_speed/sample_loop_time.py <run dir> <n> <steps> <guidance w>

The run's own sampler with `steps` and guidance w, n samples of every class in turn.
"""

import sys
import time

import ddpm  # noqa: F401  (sets the oneDNN and OpenMP variables first)

# isort: split
from ddpm.api import load_run
from ddpm.sampling.options import choose_labels
from ddpm.sampling.reverse_step import p_sample_loop, reverse_process


def main() -> None:
    run = load_run(sys.argv[1])
    n, steps, w = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    step, plan = reverse_process(
        run.model.network, run.model.diffusion, run.sampler(steps=steps, guidance=w)
    )
    labels, _ = choose_labels(run.classes, n, None, None)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        p_sample_loop(step, plan, (n, *run.image_shape), seed=0, labels=labels)
        times.append(time.perf_counter() - start)
    print(" ".join(f"{s:.2f}" for s in times))


if __name__ == "__main__":
    main()
