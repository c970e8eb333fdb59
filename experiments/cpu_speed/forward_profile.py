"""The sampling network's forward at batch N, op by op, for experiments/cpu_speed.md.

    python experiments/cpu_speed/forward_profile.py <run dir> [N, default 1000]

Times three calls of the network graph that every sampling row runs (one plain call at
the plan's sixth row), then profiles three more with mindspore.Profiler and prints the
op types' shares and the slowest ops (from cpu_op_type_info_0.csv and
cpu_op_detail_info_0.csv under /tmp/forward_profile).
"""

import csv
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import ddpm  # noqa: F401  (sets the oneDNN and OpenMP variables first)

# isort: split
import mindspore as ms
import numpy as np
from mindspore import Tensor

from ddpm.api import Run, load_run
from ddpm.sampling.reverse_step import reverse_process


def sampling_row(run: Run, n: int) -> tuple[Callable, tuple[Tensor, ...]]:
    """The network graph of the run's sampling rows, and its inputs at the plan's sixth row
    for a batch of n."""
    step, plan = reverse_process(run.model.network, run.model.diffusion, run.sampler())
    x = np.random.default_rng(0).standard_normal((n, *run.image_shape), np.float32)
    inputs = (
        Tensor(x),
        Tensor(np.full(n, plan.labels[5], plan.labels.dtype)),
        Tensor(np.arange(n, dtype=np.int32) % max(len(run.classes or []), 1)),
        Tensor(plan.coefs[5].astype(np.float32)),
    )
    return step.parts().network, inputs


def main() -> None:
    run = load_run(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    network, (x, t, y, coefs) = sampling_row(run, n)
    network(x, t, y, coefs).asnumpy()  # compiles
    times = []
    for _ in range(3):
        start = time.perf_counter()
        network(x, t, y, coefs).asnumpy()
        times.append(time.perf_counter() - start)
    print(f"forward at batch {n}: " + ", ".join(f"{s:.3f} s" for s in times))
    out = Path(tempfile.gettempdir()) / "forward_profile"
    profiler = ms.Profiler(output_path=str(out))
    for _ in range(3):
        network(x, t, y, coefs).asnumpy()
    profiler.analyse()
    folder = next(out.glob("*/FRAMEWORK"))
    with open(folder / "cpu_op_type_info_0.csv") as f:
        types = list(csv.DictReader(f))
    types.sort(key=lambda r: -float(r["total_compute_time"]))
    for r in types[:8]:
        ms_per_call = float(r["total_compute_time"]) / 3
        print(f"{r['op_type']:20s} {ms_per_call:8.1f} ms a forward  {float(r['percent']):.1%}")
    with open(folder / "cpu_op_detail_info_0.csv") as f:
        ops = list(csv.DictReader(f))
    ops.sort(key=lambda r: -float(r["op_avg_time(ms)"]))
    for r in ops[:20]:
        name = r["full_op_name"].split("network-UNet/")[-1]
        print(f"{float(r['op_avg_time(ms)']):8.2f} ms  {r['op_type']:12s} {name}")


if __name__ == "__main__":
    main()
