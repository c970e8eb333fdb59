"""Compile cpu_kernels.cc once per source, compiler and CPU, into a cache shared by runs."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_kernels.cc")
# -march=native: the library is built on the machine that runs it, and keyed by its CPU.
# No -ffast-math: with -shared it can switch the whole process to flush-to-zero.
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fopenmp", "-std=c++17", "-shared", "-fPIC"]


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "ddpm" / "kernels"
    return Path(os.environ.get("DDPM_KERNEL_CACHE", default))


def _cpu_signature() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return "\n".join(ln for ln in lines if ln.startswith(("model name", "flags")))[:4096]


def _build_key(compiler: str) -> str:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    parts = [SOURCE.read_bytes(), " ".join(FLAGS).encode(), version.encode()]
    parts.append(_cpu_signature().encode())
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


@functools.cache
def library() -> Path | None:
    """The compiled kernels, built on first call; None (with a warning) if that fails."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        log.warning(
            "no C++ compiler (g++, or $CXX) found: using MindSpore's built-in CPU ops, "
            "which are slower (see README, 'CPU speed'). Install g++ to enable the fused kernels."
        )
        return None
    target = cache_dir() / f"cpu_kernels-{_build_key(compiler)}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    cmd = [compiler, *FLAGS, str(SOURCE), "-o", str(partial)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        log.warning(
            "compiling %s failed; using MindSpore's built-in CPU ops.\n%s\n%s",
            SOURCE,
            " ".join(cmd),
            proc.stderr[-3000:],
        )
        return None
    os.replace(partial, target)  # atomic: concurrent runs never load a half-written file
    log.info("compiled the fused CPU kernels: %s", target)
    return target
