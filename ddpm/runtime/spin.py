"""How MindSpore's CPU kernel threads spin before they sleep (runtime.kernel_spin and
runtime.kernel_pause).

MindSpore 2.10 resets its kernel threads' spin to 3,000 `sched_yield` calls before every
parallel launch, with no setting of its own; `kernel_spin.c` replaces the method that does
it. `install()` builds that file and loads it into the global symbol scope, and must run
before MindSpore is imported: `import ddpm` calls it. `set_kernel_spin` then sets the count
at any time. `set_kernel_pause` makes each of a kernel thread's yields a spin of pause
instructions instead of a system call. What they cost and save: experiments/cpu_speed.md,
"The kernel threads' spin, set" and "OpenMP on MindSpore's pool".
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import sys
from pathlib import Path

from ddpm.runtime import native

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernel_spin.c")
FLAGS = ["-O2", "-shared", "-fPIC"]

_hook: ctypes.CDLL | None = None
_why_not = "ddpm.runtime.spin.install() has not run"


def install() -> None:
    """Build and load the hook, unless MindSpore is already loaded (then it cannot bind)."""
    global _hook, _why_not
    if _hook is not None:
        return
    if "mindspore" in sys.modules:
        _why_not = "MindSpore was imported before ddpm (import ddpm first)"
        return
    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        _why_not = "no C compiler (cc, or $CC) was found"
        return
    try:
        path, error = native.compile_cached(SOURCE, FLAGS, compiler)
        if path is None:
            _why_not = f"compiling {SOURCE} failed:\n{error}"
            return
        _hook = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as err:
        _why_not = f"{SOURCE} could not be built or loaded: {err}"


def installed() -> bool:
    return _hook is not None


def _write(symbol: str, key: str, value: int | None, unset: int) -> None:
    """Sets the hook's int `symbol` to `value` (`unset` for None), or warns that
    runtime.`key` has no effect without the hook."""
    if _hook is None:
        if value is not None and value != unset:
            log.warning("runtime.%s=%d has no effect: %s", key, value, _why_not)
        return
    ctypes.c_int.in_dll(_hook, symbol).value = unset if value is None else value


def _count(symbol: str) -> int:
    return 0 if _hook is None else ctypes.c_long.in_dll(_hook, symbol).value


def set_kernel_spin(count: int | None) -> None:
    """Kernel threads spin `count` yields before they sleep; None restores MindSpore's own."""
    _write("ddpm_kernel_spin", "kernel_spin", count, -1)


def calls() -> int:
    """How many times MindSpore has set its kernel threads' spin through the hook."""
    return _count("ddpm_kernel_spin_calls")


def set_kernel_pause(pauses: int | None) -> None:
    """Each yield of a kernel thread spins `pauses` pause instructions instead of entering the
    kernel; None (or 0) restores the system call. Takes effect from MindSpore's first launch."""
    _write("ddpm_kernel_pause", "kernel_pause", pauses, 0)


def pauses_made() -> int:
    """How many kernel-thread yields have been replaced by pause spins."""
    return _count("ddpm_kernel_pauses")


def yields_kept() -> int:
    """How many of those pause spins were followed by the system call (one in 64)."""
    return _count("ddpm_kernel_yields_kept")


def yield_patched() -> bool:
    """Whether MindSpore's yields reach the hook (known after MindSpore's first launch)."""
    return _hook is not None and bool(ctypes.c_int.in_dll(_hook, "ddpm_yield_patched").value)
