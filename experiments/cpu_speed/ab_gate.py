"""Train steps of two plane-size gates for the dense-convolution kernels, step-paired in one
process (experiments/cpu_speed.md, "Small planes").

    GATE=NAME:A,B python experiments/cpu_speed/ab_gate.py [overrides...]

Builds the default recipe's budget-probe trainer twice, compiling each right after setting
the gate NAME of ddpm.nn.kernels.layers (a constant of the graph) to A, then to B. The
default, KERNEL_MIN_PIXELS:196,16, runs the forward and dx kernels from 14x14 planes up,
then from 4x4 (the shipped gate); KERNEL_DW3_MIN_PIXELS:100000,16 runs the 3x3
convolutions' dw as MindSpore's, then in the kernel from 4x4. GATE=SOURCE:a.cc,b.cc builds
the kernels from two versions of cpu_kernels.cc instead, each its own library in the one
process; GATE=PRECISION:float32,bfloat16 the convolutions' products
(runtime.conv_precision). Then 60 rounds of one step each, alternating which goes first
(PAIRS, default 60), and prints the medians and the per-pair ratio B / A.
"""

import os
import sys
import time
from pathlib import Path

import ddpm  # noqa: F401  (sets the oneDNN and OpenMP variables first)

# isort: split
import numpy as np
from loop_rate import timed_run

import ddpm.nn.kernels.build as build
import ddpm.nn.kernels.layers as layers
import ddpm.nn.kernels.ops as kernel_ops
from ddpm.training.build import build_parts, build_probe


def gates() -> dict[str, int | str]:
    """GATE=NAME:A,B as {"NAME=A": A, "NAME=B": B}."""
    name, values = os.environ.get("GATE", "KERNEL_MIN_PIXELS:196,16").split(":")
    named = name in ("SOURCE", "PRECISION")
    return {f"{name}={v}": v if named else int(v) for v in values.split(",")}


def set_gate(label: str, value: int | str) -> None:
    """Sets the gate that `label` ("NAME=A") names; graphs compiled after this read it. A
    SOURCE is compiled (or found in the cache) and its ops replace the kernels' primitives."""
    name = label.split("=")[0]
    if name == "PRECISION":
        kernel_ops.use(True, bf16=value == "bfloat16")
        return
    if name != "SOURCE":
        setattr(layers, name, value)
        return
    build.SOURCE = Path(value).resolve()
    kernel_ops.reload()


def main() -> None:
    run = timed_run(sys.argv[1:])
    trainers = {}
    for name, gate in gates().items():
        set_gate(name, gate)
        trainer = build_probe(build_parts(run))
        stream = trainer.stream()
        for _ in range(3):  # compiles with this gate
            trainer.train_one(next(stream))
        trainers[name] = (trainer, stream)
    times = {name: [] for name in trainers}
    for i in range(int(os.environ.get("PAIRS", "60"))):
        for name in list(trainers)[:: 1 if i % 2 == 0 else -1]:
            trainer, stream = trainers[name]
            batch = next(stream)
            start = time.perf_counter()
            trainer.train_one(batch)
            times[name].append(time.perf_counter() - start)
            time.sleep(0.05)
    old, new = (np.array(t) for t in times.values())
    medians = {name: round(1000 * float(np.median(t)), 1) for name, t in times.items()}
    quartiles = np.round(np.percentile(new / old, [25, 75]), 3)
    print(
        f"median step (ms): {medians}; per-pair ratio {float(np.median(new / old)):.3f} "
        f"(quartiles {quartiles[0]}-{quartiles[1]})"
    )


if __name__ == "__main__":
    main()
