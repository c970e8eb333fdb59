"""The train loop's rate and where its CPU time goes, for experiments/cpu_speed.md.

    python experiments/cpu_speed/loop_rate.py [overrides...]

Builds the default recipe's budget-probe trainer (ddpm.training.build.build_probe), runs 3
warm-up steps, then N (env N, default 150) train steps, and prints steps/s, user and
system CPU seconds, context switches and minor page faults per step. HOOK (env) is Python
run after the runtime is configured and before the network is built, to try a setting.
"""

import json
import os
import resource
import sys
import time

import ddpm  # noqa: F401  (sets the oneDNN and OpenMP variables first)

# isort: split
import numpy as np
from hydra import compose, initialize_config_dir

from ddpm.config.groups import CONF_DIR, RunConfig, resolve
from ddpm.training.build import build_parts, build_probe
from ddpm.training.fit import setup_runtime


def usage() -> tuple[float, ...]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_nvcsw, r.ru_nivcsw, r.ru_minflt


def settled_steps(trainer, stream, k: int) -> tuple[float, np.ndarray]:
    """One step that lets the threads settle after a change of setting, then k timed ones:
    the seconds a step, and the [user, system] CPU seconds they took."""
    trainer.train_one(next(stream))
    before, start = usage(), time.perf_counter()
    for _ in range(k):
        trainer.train_one(next(stream))
    return (time.perf_counter() - start) / k, np.array(usage()[:2]) - np.array(before[:2])


def timed_run(overrides: list[str]) -> RunConfig:
    """The default recipe (with `overrides`) as a step count, its runtime set up."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        fixed = ["trainer.minutes=null", "trainer.steps=2000", *overrides]
        run = resolve(compose("config", overrides=fixed))
    setup_runtime(run)
    return run


def main() -> None:
    n = int(os.environ.get("N", "150"))
    run = timed_run(sys.argv[1:])
    if os.environ.get("HOOK"):
        exec(os.environ["HOOK"])
    trainer = build_probe(build_parts(run))
    stream = trainer.stream()
    for _ in range(3):
        trainer.train_one(next(stream))
    before, start, times = usage(), time.perf_counter(), []
    for _ in range(n):
        begin = time.perf_counter()
        trainer.train_one(next(stream))
        times.append(time.perf_counter() - begin)
    wall, after = time.perf_counter() - start, usage()
    user, system, vcsw, ivcsw, minflt = (b - a for a, b in zip(before, after, strict=True))
    print(
        json.dumps(
            {
                "steps_per_s": round(n / wall, 2),
                "median_step_ms": round(1000 * float(np.median(times)), 1),
                "user_s": round(user, 1),
                "system_s": round(system, 1),
                "system_share": round(system / (user + system), 3),
                "cpu_per_wall": round((user + system) / wall, 2),
                "voluntary_switches_per_step": round(vcsw / n),
                "involuntary_switches_per_step": round(ivcsw / n),
                "minor_faults_per_step": round(minflt / n),
            }
        )
    )


if __name__ == "__main__":
    main()
