"""Compile a C or C++ source into a shared library once per source, flags, compiler and
CPU, in a cache that runs share ($DDPM_KERNEL_CACHE, default ~/.cache/ddpm/kernels).

Only the standard library: `import ddpm` builds the runtime's spin hook with it before
anything loads MindSpore (ddpm.runtime.spin).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "ddpm" / "kernels"
    return Path(os.environ.get("DDPM_KERNEL_CACHE", default))


@functools.cache
def _cpu_signature() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    return "\n".join(ln for ln in lines if ln.startswith(("model name", "flags")))[:4096]


def build_key(compiler: str, source: Path, flags: list[str], extra: tuple[Path, ...] = ()) -> str:
    """What the library depends on: the sources, the flags, the compiler's version and the
    CPU (flags such as -march=native build for the machine that runs it)."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    parts = [source.read_bytes(), *(p.read_bytes() for p in extra)]
    parts += [" ".join(flags).encode(), version.encode(), _cpu_signature().encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def compile_cached(
    source: Path, flags: list[str], compiler: str, extra: tuple[Path, ...] = ()
) -> tuple[Path | None, str]:
    """The library built from `source` and the `extra` sources linked with it, from the cache
    if it is there: (path, "") or, if compilation failed, (None, the command and the
    compiler's last output)."""
    target = cache_dir() / f"{source.stem}-{build_key(compiler, source, flags, extra)}.so"
    if target.exists():
        return target, ""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    cmd = [compiler, *flags, str(source), *map(str, extra), "-o", str(partial)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        return None, f"{' '.join(cmd)}\n{proc.stderr[-3000:]}"
    os.replace(partial, target)  # atomic: concurrent runs never load a half-written file
    log.info("compiled %s", target)
    return target, ""
