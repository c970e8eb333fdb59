"""Fused CPU kernels for the ops that MindSpore 2.10 runs slowly on CPU.

MindSpore's profiler on the seed's train step (experiments/cpu_speed.md) put three op
families far behind PyTorch on the same machine: depthwise 7x7 convolutions (oneDNN's grouped-gemm
path), GroupNorm with its gradient, and softmax over a non-last axis (a transpose, a
softmax and a ReduceSum in the backward pass). A profile of the batch-64 sampling forward
added the exact GELU, whose Erf op alone took 39 ms of 530, and the linear attention's
LayerNorm over channels, whose built-in ops (means, powers, products) added 270 MB to the
seed benchmark's peak RSS. `cpu_kernels.cc` computes each, with its backward, as a
MindSpore AOT custom op (`ops.py`). The cells in `layers.py` keep the built-in cells'
parameters, names and initialisation, so checkpoints do not depend on the choice. The
GroupNorm and depthwise kernels also take a per-sample affine or bias, so the U-Net's
blocks fold their time conditioning in (`GroupNorm.modulated`, `DepthwiseConv2d.shifted`),
and the GroupNorm kernel can apply the SiLU that follows it in a ResNet block.
Two more came later: dense convolutions on planes of 14x14 and larger (`Conv2d`: the
forward pass and dx, and dw from 28x28), where MindSpore's ops ran at half the speed they
reach on smaller planes, and the whole optimiser step (`adam_ema`: clipping, Adam, EMA),
which replaces about nine graph ops per parameter.

The kernels are used when the device is CPU, `use(False)` was not called (config
`runtime.cpu_kernels`), DDPM_CPU_KERNELS is not 0, and the library compiles. Otherwise
the built-in ops run, with a warning if compilation was the reason.
"""

from ddpm.kernels.build import library
from ddpm.kernels.layers import (
    GELU,
    ChannelLayerNorm,
    Conv2d,
    DepthwiseConv2d,
    GroupNorm,
    Softmax,
)
from ddpm.kernels.ops import active, adam_ema, use

__all__ = [
    "GELU",
    "ChannelLayerNorm",
    "Conv2d",
    "DepthwiseConv2d",
    "GroupNorm",
    "Softmax",
    "active",
    "adam_ema",
    "library",
    "use",
]
