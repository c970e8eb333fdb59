"""Small layers shared by the blocks, with PyTorch-like conv defaults made explicit."""

from __future__ import annotations

import math

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from ddpm.nn import kernels


def conv(
    c_in: int,
    c_out: int,
    kernel: int,
    *,
    stride: int = 1,
    groups: int = 1,
    bias: bool = True,
    float32: bool = False,
):
    """Conv2d with k//2 padding and a bias (MindSpore defaults to pad_mode='same', no bias);
    `float32`: float32 products in the kernels whatever runtime.conv_precision says."""
    if stride == 1 and groups == 1:  # kernels on large planes
        return kernels.Conv2d(c_in, c_out, kernel, has_bias=bias, float32=float32)
    return nn.Conv2d(
        c_in,
        c_out,
        kernel,
        stride=stride,
        pad_mode="pad",
        padding=kernel // 2,
        group=groups,
        has_bias=bias,
    )


def downsample(dim: int) -> nn.Cell:
    """4x4 stride-2 conv: H x W -> H/2 x W/2."""
    return nn.Conv2d(dim, dim, 4, stride=2, pad_mode="pad", padding=1, has_bias=True)


def upsample(dim: int) -> nn.Cell:
    """4x4 stride-2 transposed conv: H x W -> 2H x 2W (torch ConvTranspose2d(4, 2, 1))."""
    return nn.Conv2dTranspose(dim, dim, 4, stride=2, pad_mode="pad", padding=1, has_bias=True)


def gelu() -> nn.Cell:
    # The erf form (the tanh approximation is ~2x slower on MindSpore CPU), fused when active.
    return kernels.GELU()


class SinusoidalEmbedding(nn.Cell):
    """Transformer position embedding of the timestep: [B] -> [B, dim] (Vaswani et al. 2017)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = np.exp(-math.log(10000) * np.arange(half) / (half - 1))
        self.freqs = Tensor(freqs[None, :], mstype.float32)  # [1, dim/2]

    def construct(self, t: Tensor) -> Tensor:
        args = ops.cast(t, mstype.float32)[:, None] * self.freqs  # [B, dim/2]
        return ops.concat((ops.sin(args), ops.cos(args)), axis=-1)  # [B, dim]
