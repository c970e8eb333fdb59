"""Where `python -m ddpm.sample <run> --n 1000` spends its time, for experiments/cpu_speed.md.

    python experiments/cpu_speed/sample_phases.py <run dir> [n, default 1000]

Prints the seconds of the imports, of loading the run, and of each reverse step of the
run's own sampler (the first of each compiled step includes its compilation).
"""

import sys
import time

start = time.perf_counter()
import ddpm  # noqa: E402, F401  (sets the oneDNN and OpenMP variables first)

# isort: split
from ddpm.api import load_run  # noqa: E402
from ddpm.sampling.options import choose_labels  # noqa: E402
from ddpm.sampling.reverse_step import p_sample_loop, reverse_process  # noqa: E402


def main() -> None:
    imported = time.perf_counter()
    print(f"imports: {imported - start:.1f} s")
    run = load_run(sys.argv[1])
    model = run.model
    loaded = time.perf_counter()
    print(f"loading the run: {loaded - imported:.1f} s")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    labels, _ = choose_labels(run.classes, n, None, None)
    step, plan = reverse_process(model.network, model.diffusion, run.sampler())
    times, last = [], [time.perf_counter()]

    def on_step(i: int, x) -> None:  # x.asnumpy() has synchronised the step
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    shape = (n if labels is None else len(labels), *run.image_shape)
    p_sample_loop(step, plan, shape, seed=0, on_step=on_step, labels=labels)
    print(f"sampling: {time.perf_counter() - loaded:.1f} s")
    for i, (w, s) in enumerate(zip(plan.guidance, times, strict=True)):
        kind = "guided" if step.at(float(w)).guided else "plain"
        print(f"  step {i:2d} (w = {w:g}, {kind}): {s:.2f} s")


if __name__ == "__main__":
    main()
