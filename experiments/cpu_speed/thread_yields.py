"""Yields and CPU time by thread at several kernel-thread spins, in one process
(experiments/cpu_speed.md, "Why a sleeping thread costs here").

    gcc -O2 -shared -fPIC -o /tmp/yield_count.so experiments/cpu_speed/yield_count.c -ldl
    SPINS=1,10,100,null LD_PRELOAD=/tmp/yield_count.so \
        python experiments/cpu_speed/thread_yields.py [overrides...]

Builds the default recipe's budget-probe trainer, then for each runtime.kernel_spin in SPINS
runs 3 settling steps and N (default 60) timed ones. Prints the step, the system share, and
each thread's user and system milliseconds a step and context switches (from
/proc/self/task); with the preloaded counter, each thread's sched_yield calls follow. The
fused kernels' libgomp worker carries the name of the thread that started it.
"""

import ctypes
import os
import sys
import time
from pathlib import Path

import ddpm  # noqa: F401  (loads the spin hook before MindSpore)

# isort: split
from loop_rate import timed_run, usage

from ddpm.runtime import spin
from ddpm.training.build import build_parts, build_probe

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def threads() -> dict[str, tuple]:
    """Name, user and system ticks, voluntary and involuntary switches of each thread."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            stat = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text().splitlines()
        except OSError:  # the thread ended
            continue
        switches = [int(line.split()[1]) for line in status if "ctxt_switches" in line]
        out[task.name] = (name, int(stat[11]), int(stat[12]), *switches)
    return out


def print_threads(before: dict[str, tuple], after: dict[str, tuple], n: int) -> None:
    """Each thread's CPU milliseconds and context switches a step, over n steps."""
    for tid, (name, *figures) in after.items():
        if tid not in before:
            continue
        user, system, vol, invol = (b - a for a, b in zip(before[tid][1:], figures, strict=True))
        if user + system:
            print(
                f"  {tid} {name:16s} user {user * TICK_MS / n:.1f} ms, system "
                f"{system * TICK_MS / n:.1f} ms, switches {vol / n:.0f} + {invol / n:.0f} a step",
                flush=True,
            )


def main() -> None:
    counter = ctypes.CDLL(None)
    counting = hasattr(counter, "yield_count_dump")
    n = int(os.environ.get("N", "60"))
    trainer = build_probe(build_parts(timed_run(sys.argv[1:])))
    stream = trainer.stream()
    for count in os.environ.get("SPINS", "1,null").split(","):
        spin.set_kernel_spin(None if count == "null" else int(count))
        for _ in range(3):
            trainer.train_one(next(stream))
        if counting:
            counter.yield_count_reset()
        before, start, cpu = threads(), time.perf_counter(), usage()
        for _ in range(n):
            trainer.train_one(next(stream))
        wall = time.perf_counter() - start
        user, system = (b - a for a, b in zip(cpu[:2], usage()[:2], strict=True))
        share = system / (user + system)
        print(f"kernel_spin={count}: {1000 * wall / n:.1f} ms a step, system share {share:.3f}")
        print_threads(before, threads(), n)
        if counting:
            counter.yield_count_dump()


if __name__ == "__main__":
    main()
