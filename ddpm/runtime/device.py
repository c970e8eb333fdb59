"""The runtime section: device, execution mode and the fused CPU kernels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import mindspore as ms

from ddpm.config.schema import OneOf, check_section, keys_of
from ddpm.nn import kernels


@dataclass(frozen=True)
class RuntimeKeys:
    device: Annotated[str, OneOf(("CPU", "GPU", "Ascend"))]
    mode: Annotated[str, OneOf(("graph", "pynative"))]
    cpu_kernels: bool  # the fused C++ kernels of ddpm.nn.kernels; DDPM_CPU_KERNELS=0 also disables


def runtime_keys(section: dict[str, Any]) -> RuntimeKeys:
    return RuntimeKeys(**check_section(section, keys_of(RuntimeKeys), "runtime", "runtime"))


def configure_runtime(runtime: RuntimeKeys, mode: str | None = None) -> None:
    """Apply the runtime section: device, execution mode (or `mode`), fused CPU kernels."""
    ms.set_device(runtime.device)
    graph = (mode or runtime.mode) == "graph"
    ms.set_context(mode=ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    kernels.use(runtime.cpu_kernels)
