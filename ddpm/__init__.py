"""ddpm: config-driven denoising diffusion experiments on MindSpore."""

import os
import platform

# On AVX-512 CPUs MindSpore hands oneDNN plain NCHW tensors and every k>1 convolution falls
# back to oneDNN's reference kernel (~20x slower). Capping the ISA at AVX2 selects the
# gemm:jit path. It must be set before MindSpore loads, and only if the user has not set it.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

__version__ = "0.1.0"
