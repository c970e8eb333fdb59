"""Fused CPU kernels, each with its backward, as MindSpore AOT custom ops.

`cpu_kernels.cc` computes, for float32 NCHW tensors on the CPU:
- depthwise convolutions (`DepthwiseConv2d`), with an optional per-sample bias;
- dense convolutions with their bias on planes of 4x4 and larger (`Conv2d`: forward and
  dx; dw and dbias for 3x3 kernels, and from 28x28 for others), whose products can be
  bf16 where the CPU has AVX512-BF16 (`use(..., bf16=True)`, config
  `runtime.conv_precision`);
- GroupNorm (`GroupNorm`) with an optional per-sample affine and a fused SiLU;
- softmax over a non-last axis (`Softmax`), the exact GELU (`GELU`) and the channel
  LayerNorm of linear attention (`ChannelLayerNorm`);
- the whole optimiser step (`adam_ema`): global-norm clipping, Adam and the EMA.

`ops.py` binds them, and the cells in `layers.py` keep the built-in cells' parameters,
names and initialisation, so checkpoints do not depend on the choice. The U-Net's blocks
fold their time conditioning into the GroupNorm affine (`GroupNorm.modulated`) and the
depthwise bias (`DepthwiseConv2d.shifted`). Why each exists, with its profile, is in
experiments/cpu_speed.md.

The kernels are used when the device is CPU, `use(False)` was not called (config
`runtime.cpu_kernels`), DDPM_CPU_KERNELS is not 0, and the library compiles. Otherwise
the built-in ops run, with a warning if compilation was the reason.
"""

from ddpm.nn.kernels.build import library
from ddpm.nn.kernels.layers import (
    GELU,
    ChannelLayerNorm,
    Conv2d,
    DepthwiseConv2d,
    GroupNorm,
    Softmax,
)
from ddpm.nn.kernels.ops import active, adam_ema, bf16_capable, use

__all__ = [
    "GELU",
    "ChannelLayerNorm",
    "Conv2d",
    "DepthwiseConv2d",
    "GroupNorm",
    "Softmax",
    "active",
    "adam_ema",
    "bf16_capable",
    "library",
    "use",
]
