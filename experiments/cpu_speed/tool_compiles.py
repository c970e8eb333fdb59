"""The graph compilations of one ddpm tool's run, for experiments/cpu_speed.md.

    python experiments/cpu_speed/tool_compiles.py ddpm.guidance <run dir> --scales 0,1,2

Runs the tool's `main` with its arguments in this process and prints each graph compiled
(MindSpore's `_CellGraphExecutor.compile` over 50 ms: the cell's class and seconds), their
count and sum, and the command's wall time. Run it from the tree whose code it should time
(`PYTHONPATH=<tree>`): the script's folder, not the working directory, leads sys.path.
"""

import importlib
import sys
import time

start = time.perf_counter()
import ddpm  # noqa: E402, F401  (sets the oneDNN and OpenMP variables first)

# isort: split
from mindspore.graph import api  # noqa: E402

compiled: list[tuple[str, float]] = []
_compile = api._CellGraphExecutor.compile


def timed_compile(self, obj, *args, **kwargs):
    began = time.perf_counter()
    result = _compile(self, obj, *args, **kwargs)
    seconds = time.perf_counter() - began
    if seconds > 0.05:  # a cached phase returns at once
        compiled.append((type(obj).__name__, seconds))
    return result


api._CellGraphExecutor.compile = timed_compile
importlib.import_module(sys.argv[1]).main(sys.argv[2:])
print(f"{len(compiled)} compilations, {sum(s for _, s in compiled):.1f} s:")
print(", ".join(f"{name} {seconds:.2f}" for name, seconds in compiled))
print(f"command {time.perf_counter() - start:.1f} s")
