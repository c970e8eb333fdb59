"""The runtime section: device, execution mode, compile level and the fused CPU kernels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import mindspore as ms

from ddpm.config.errors import ConfigError
from ddpm.config.schema import OneOf, Range, check_section, keys_of
from ddpm.nn import kernels
from ddpm.runtime import spin


@dataclass(frozen=True)
class RuntimeKeys:
    device: Annotated[str, OneOf(("CPU", "GPU", "Ascend"))]
    mode: Annotated[str, OneOf(("graph", "pynative"))]
    jit_level: Annotated[str | None, OneOf(("O0", "O1"))]  # graph compile level (null: MindSpore's)
    cpu_kernels: bool  # the fused C++ kernels of ddpm.nn.kernels; DDPM_CPU_KERNELS=0 also disables
    # the products of the kernels' dense convolutions (sums stay float32)
    conv_precision: Annotated[str, OneOf(("float32", "bfloat16"))]
    threads: Annotated[int | None, Range(gt=0)]  # threads of MindSpore's own ops (null: its own)
    # yields a kernel thread spins before it sleeps (null: MindSpore's 3,000)
    kernel_spin: Annotated[int | None, Range(ge=0)]
    # pause instructions in place of each of a kernel thread's yields (null: the system call)
    kernel_pause: Annotated[int | None, Range(ge=0)]
    # whose threads run the fused kernels' parallel regions
    kernel_pool: Annotated[str, OneOf(("mindspore", "openmp"))]


def runtime_keys(section: dict[str, Any]) -> RuntimeKeys:
    return RuntimeKeys(**check_section(section, keys_of(RuntimeKeys), "runtime", "runtime"))


def configure_runtime(runtime: RuntimeKeys, mode: str | None = None) -> None:
    """Apply the runtime section: device, execution mode (or `mode`), compile level, fused
    CPU kernels (their convolutions' precision and their threads), kernel threads and their
    spin."""
    ms.set_device(runtime.device)
    graph = (mode or runtime.mode) == "graph"
    ms.set_context(mode=ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    if runtime.jit_level is not None:
        ms.set_context(jit_config={"jit_level": runtime.jit_level})
    bf16 = runtime.conv_precision == "bfloat16"
    pool = runtime.kernel_pool == "mindspore"
    kernels.use(runtime.cpu_kernels, bf16=bf16, pool=pool)
    if runtime.threads is not None:
        set_threads(runtime.threads)
    spin.set_kernel_spin(runtime.kernel_spin)
    # A pausing kernel thread holds its core: only where no libgomp worker waits for it.
    spin.set_kernel_pause(runtime.kernel_pause if pool and graph else None)


_threads: list[int] = []  # MindSpore takes the thread count once per process


def set_threads(n: int) -> None:
    if _threads and _threads[0] != n:
        raise ConfigError(
            f"runtime.threads={n}: this process already runs {_threads[0]} kernel threads "
            "(MindSpore fixes the count once per process)"
        )
    if not _threads:
        ms.device_context.cpu.op_tuning.threads_num(n)
        _threads.append(n)
