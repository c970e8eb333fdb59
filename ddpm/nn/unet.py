"""The denoising U-Net (Ronneberger et al. 2015; Ho et al. 2020), assembled from registries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from mindspore import Tensor, nn, ops

from ddpm.config.registry import Registry
from ddpm.config.schema import Length, PositiveInt, Range
from ddpm.nn.attention import AttentionFactory
from ddpm.nn.layers import SinusoidalEmbedding, conv, downsample, gelu, upsample

BlockFactory = Callable[[int, int, int], nn.Cell]  # (dim_in, dim_out, time_dim) -> block
MODELS = Registry("model")


class _Level(nn.Cell):
    """Two time-conditioned blocks and an attention layer at one resolution."""

    def __init__(self, block1: nn.Cell, block2: nn.Cell, attn: nn.Cell) -> None:
        super().__init__()
        self.block1, self.block2, self.attn = block1, block2, attn

    def construct(self, x: Tensor, temb: Tensor) -> Tensor:
        return self.attn(self.block2(self.block1(x, temb), temb))


@MODELS.register("unet")
class UNet(nn.Cell):
    """eps_theta(x_t, t, y): [B, C, H, W], [B], [B] -> [B, C, H, W]; with learns_variance,
    [B, 2C, H, W]: the C channels of the objective's output, then the C of the variance's v
    (ddpm.diffusion.variance).

    Resolution i has channels dim * dim_mults[i]; every level but the last halves H and W.
    The decoder mirrors the encoder, concatenating each level's skip before its blocks.
    With patch_size p > 1 the network sees p x p patches as channels, [B, C p^2, H/p, W/p]
    (pixel unshuffle, as a patch embedding in U-ViT and DiT), and its output is shuffled back.
    With num_classes K > 0, an embedding of the label y (K classes and the null class K)
    is added to the time embedding (ddpm.diffusion.conditioning); with K = 0 the network ignores y.
    """

    def __init__(
        self,
        channels: int,
        make_block: BlockFactory,
        make_attention: AttentionFactory,
        make_mid_attention: AttentionFactory,
        num_classes: int = 0,
        learns_variance: bool = False,
        *,
        dim: PositiveInt,  # base width; level i has dim * dim_mults[i] channels
        dim_mults: Annotated[list[int], Range(gt=0), Length(1, at_least=True)],
        init_dim: Annotated[int | None, Range(gt=0)],  # the first conv's width; null: dim
        patch_size: PositiveInt,  # p: the blocks run at H/p x W/p on C p^2 channels
    ) -> None:
        super().__init__()
        self.patch = patch_size
        self.learns_variance = learns_variance
        out_channels = channels * (2 if learns_variance else 1) * patch_size**2
        channels *= patch_size**2
        init_dim = init_dim or dim
        dims = [init_dim, *(dim * m for m in dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:], strict=True))
        time_dim = dim * 4
        self.num_levels = len(in_out)
        self.init_conv = conv(channels, init_dim, 7, float32=True)  # reads x_t (Conv2d)
        self.time_mlp = nn.SequentialCell(
            SinusoidalEmbedding(dim), nn.Dense(dim, time_dim), gelu(), nn.Dense(time_dim, time_dim)
        )
        self.num_classes = num_classes
        if num_classes:
            self.class_emb = nn.Embedding(num_classes + 1, time_dim)  # row K: the null class
        # Lists are built in full before assignment, so parameter names are unique.
        downs, ups, down_samplers, up_samplers = [], [], [], []
        for i, (d_in, d_out) in enumerate(in_out):
            last = i == self.num_levels - 1
            downs.append(
                _Level(
                    make_block(d_in, d_out, time_dim),
                    make_block(d_out, d_out, time_dim),
                    make_attention(d_out, i),
                )
            )
            down_samplers.append(nn.Identity() if last else downsample(d_out))
        for i, (d_in, d_out) in reversed(list(enumerate(in_out))):
            ups.append(
                _Level(
                    make_block(d_out * 2, d_in, time_dim),
                    make_block(d_in, d_in, time_dim),
                    make_attention(d_in, i),
                )
            )
            up_samplers.append(nn.Identity() if i == 0 else upsample(d_in))
        self.downs, self.ups = nn.CellList(downs), nn.CellList(ups)
        self.down_samplers, self.up_samplers = nn.CellList(down_samplers), nn.CellList(up_samplers)
        mid = dims[-1]
        self.mid_block1 = make_block(mid, mid, time_dim)
        self.mid_attn = make_mid_attention(mid, self.num_levels - 1)
        self.mid_block2 = make_block(mid, mid, time_dim)
        self.final_block = make_block(init_dim, dim, time_dim)
        self.final_conv = conv(dim, out_channels, 1)

    def construct(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        temb = self.time_mlp(t)  # [B, 4*dim]
        if self.num_classes:
            temb = temb + self.class_emb(y)
        if self.patch > 1:
            return self.unshuffled(x, temb)
        return self.denoise(x, temb)

    def unshuffled(self, x: Tensor, temb: Tensor) -> Tensor:
        """denoise() on p x p patches as channels; the inverse reshape on the way out."""
        b, c, h, w = x.shape
        p = self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).transpose(0, 1, 3, 5, 2, 4)
        out = self.denoise(x.reshape(b, c * p * p, h // p, w // p), temb)
        c_out = 2 * c if self.learns_variance else c
        out = out.reshape(b, c_out, p, p, h // p, w // p).transpose(0, 1, 4, 2, 5, 3)
        return out.reshape(b, c_out, h, w)

    def denoise(self, x: Tensor, temb: Tensor) -> Tensor:
        x = self.init_conv(x)
        skips = []
        for i in range(self.num_levels):
            x = self.downs[i](x, temb)
            skips.append(x)
            x = self.down_samplers[i](x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, temb)), temb)
        for i in range(self.num_levels):
            x = ops.concat((x, skips[self.num_levels - 1 - i]), axis=1)  # [B, 2C, H, W]
            x = self.ups[i](x, temb)
            x = self.up_samplers[i](x)
        return self.final_conv(self.final_block(x, temb))
