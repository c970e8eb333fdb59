"""Time-conditioned conv blocks. Interface: Block(dim_in, dim_out, time_dim, *, keys)(x, temb).

The keyword-only parameters are the keys of the block's config section (ddpm.config.schema).
"""

from __future__ import annotations

from mindspore import Tensor, nn, ops

from ddpm.config.registry import ConfigError, Registry
from ddpm.config.schema import PositiveInt
from ddpm.nn.kernels import DepthwiseConv2d, GroupNorm
from ddpm.nn.layers import conv, gelu

BLOCKS = Registry("block")


@BLOCKS.register("resnet")
class ResnetBlock(nn.Cell):
    """Wide-ResNet block (Zagoruyko & Komodakis 2016) with scale-shift time conditioning."""

    def __init__(self, dim_in: int, dim_out: int, time_dim: int, *, groups: PositiveInt) -> None:
        super().__init__()
        if dim_out % groups:
            raise ConfigError(
                f"block.groups={groups} does not divide {dim_out}, the width of a U-Net block; "
                "GroupNorm needs it to divide every width (model.dim x model.dim_mults)"
            )
        self.time_mlp = nn.SequentialCell(nn.SiLU(), nn.Dense(time_dim, dim_out * 2))
        # conv -> GroupNorm -> SiLU, twice; the norms apply the SiLU themselves.
        self.conv1, self.norm1 = conv(dim_in, dim_out, 3), GroupNorm(groups, dim_out, silu=True)
        self.conv2, self.norm2 = conv(dim_out, dim_out, 3), GroupNorm(groups, dim_out, silu=True)
        self.res_conv = conv(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def construct(self, x: Tensor, temb: Tensor) -> Tensor:
        scale, shift = ops.chunk(self.time_mlp(temb), 2, axis=1)  # [B, C_out] each
        h = self.norm1.modulated(self.conv1(x), scale, shift)  # FiLM conditioning
        h = self.norm2(self.conv2(h))
        return h + self.res_conv(x)


@BLOCKS.register("convnext")
class ConvNextBlock(nn.Cell):
    """ConvNeXt block (Liu et al. 2022) as in The Annotated Diffusion Model: 7x7 depthwise,
    + time, then norm-conv-GELU-conv."""

    def __init__(
        self, dim_in: int, dim_out: int, time_dim: int, *, mult: PositiveInt, norm: bool
    ) -> None:
        super().__init__()
        self.time_mlp = nn.SequentialCell(gelu(), nn.Dense(time_dim, dim_in))
        self.ds_conv = DepthwiseConv2d(dim_in, 7)
        self.net = nn.SequentialCell(
            GroupNorm(1, dim_in) if norm else nn.Identity(),
            conv(dim_in, dim_out * mult, 3),
            gelu(),
            GroupNorm(1, dim_out * mult),
            conv(dim_out * mult, dim_out, 3),
        )
        self.res_conv = conv(dim_in, dim_out, 1) if dim_in != dim_out else nn.Identity()

    def construct(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.ds_conv.shifted(x, self.time_mlp(temb))  # [B, C_in, H, W]
        return self.net(h) + self.res_conv(x)
