"""Compile cpu_kernels.cc once per source, compiler and CPU, into a cache shared by runs."""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path

from ddpm.runtime import native

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_kernels.cc")
# Linked in for runtime.kernel_pool=mindspore: the OpenMP regions run on MindSpore's pool.
POOL_SOURCE = Path(__file__).with_name("pool_omp.cc")
# -march=native: the library is built on the machine that runs it, and keyed by its CPU.
# No -ffast-math: with -shared it can switch the whole process to flush-to-zero.
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-std=c++17", "-shared", "-fPIC"]


@functools.cache
def library(on_pool: bool = False) -> Path | None:
    """The compiled kernels, built on first call; None (with a warning) if that fails. With
    `on_pool`, their OpenMP regions run on MindSpore's kernel pool (pool_omp.cc), else on
    libgomp's threads."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        log.warning(
            "no C++ compiler (g++, or $CXX) found: using MindSpore's built-in CPU ops, "
            "which are slower (see README, 'CPU speed'). Install g++ to enable the fused kernels."
        )
        return None
    extra = (POOL_SOURCE,) if on_pool else ()
    target, error = native.compile_cached(SOURCE, FLAGS, compiler, extra)
    if target is None:
        log.warning("compiling %s failed; using MindSpore's built-in CPU ops.\n%s", SOURCE, error)
    return target
