"""Self-attention over pixels. Interface: Attention(dim, *, keys)(x) -> x-shaped.

The keyword-only parameters are the keys of the attention's config section; `levels` and
`mid`, which every attention takes, say where the U-Net places it (`placement`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mindspore import Tensor, nn, ops

from ddpm.config.registry import Option, Registry
from ddpm.config.schema import NonNegativeInt, PositiveInt
from ddpm.nn.kernels import ChannelLayerNorm, GroupNorm, Softmax
from ddpm.nn.layers import conv

AttentionFactory = Callable[[int, int], nn.Cell]  # (channels, level) -> layer


@dataclass(frozen=True)
class AttentionKeys:
    """The keys every attention takes: where the U-Net places it."""

    levels: list[NonNegativeInt] | None  # levels with attention (0 = full resolution); null: all
    mid: str  # the attention of the middle block, an attention name


ATTENTIONS = Registry("attention", shared=AttentionKeys)

# Batched matmuls that read an operand transposed, with no Transpose op in the graph.
_matmul_at = ops.BatchMatMul(transpose_a=True)  # a^T b
_matmul_bt = ops.BatchMatMul(transpose_b=True)  # a b^T


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, hc, h, w = x.shape
    return x.reshape((b, heads, hc // heads, h * w))  # [B, heads, d, N]


@ATTENTIONS.register("full")
class FullAttention(nn.Cell):
    """Multi-head softmax attention (Vaswani et al. 2017); O(N^2) in the pixel count N."""

    def __init__(self, dim: int, *, heads: PositiveInt, dim_head: PositiveInt) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_qkv = conv(dim, heads * dim_head * 3, 1, bias=False)
        self.to_out = conv(heads * dim_head, dim, 1)
        self.softmax = Softmax(axis=-1)

    def construct(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q, k, v = ops.chunk(self.to_qkv(x), 3, axis=1)
        q = _split_heads(q, self.heads) * self.scale  # [B, heads, d, N]
        k, v = _split_heads(k, self.heads), _split_heads(v, self.heads)
        sim = _matmul_at(q, k)  # [B, heads, N, N]
        attn = self.softmax(sim)
        out = _matmul_bt(v, attn)  # [B, heads, d, N]
        return self.to_out(out.reshape((b, -1, h, w)))


@ATTENTIONS.register("linear")
class LinearAttention(nn.Cell):
    """Linear attention (Shen et al. 2018): softmax q over d and k over N; O(N) in pixels."""

    def __init__(self, dim: int, *, heads: PositiveInt, dim_head: PositiveInt) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_qkv = conv(dim, heads * dim_head * 3, 1, bias=False)
        self.to_out = nn.SequentialCell(conv(heads * dim_head, dim, 1), ChannelLayerNorm(dim))
        self.softmax_d, self.softmax_n = Softmax(axis=-2), Softmax(axis=-1)

    def construct(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        q, k, v = ops.chunk(self.to_qkv(x), 3, axis=1)
        # The Annotated Diffusion Model divides v by N; out is linear in v and q, so q takes
        # that factor.
        q = self.softmax_d(_split_heads(q, self.heads)) * (self.scale / (h * w))  # [B, heads, d, N]
        k = self.softmax_n(_split_heads(k, self.heads))
        v = _split_heads(v, self.heads)
        context = _matmul_bt(k, v)  # [B, heads, d, e]
        out = _matmul_at(context, q)  # [B, heads, e, N]
        return self.to_out(out.reshape((b, -1, h, w)))


@ATTENTIONS.register("none")
class NoAttention(nn.Cell):
    """The identity; selects a U-Net without attention."""

    def __init__(self, dim: int) -> None:
        super().__init__()

    def construct(self, x: Tensor) -> Tensor:
        return x


class PreNormResidual(nn.Cell):
    """x + fn(GroupNorm(1, C)(x))."""

    def __init__(self, dim: int, fn: nn.Cell) -> None:
        super().__init__()
        self.norm = GroupNorm(1, dim)
        self.fn = fn

    def construct(self, x: Tensor) -> Tensor:
        return x + self.fn(self.norm(x))


def residual(attention: Option, dim: int) -> nn.Cell:
    """The residual pre-norm layer of an attention option; 'none' adds no layer or parameter."""
    fn = attention(dim)
    return fn if isinstance(fn, NoAttention) else PreNormResidual(dim, fn)


def placement(attention: Option) -> tuple[AttentionFactory, AttentionFactory]:
    """The per-level and the middle attention layers of a resolved attention option.

    The middle attention (`mid`) takes those of the section's keys that its type accepts.
    """
    keys: AttentionKeys = attention.shared
    mid_keys = ATTENTIONS.own_keys(keys.mid)
    mid_section = {"name": keys.mid, "levels": None, "mid": keys.mid}
    mid_section.update({k: v for k, v in attention.params.items() if k in mid_keys})
    mid = ATTENTIONS.resolve(mid_section, prefix="attention")
    none = Option("attention", "none", NoAttention, {})

    def per_level(dim: int, level: int) -> nn.Cell:
        chosen = attention if keys.levels is None or level in keys.levels else none
        return residual(chosen, dim)

    return per_level, lambda dim, level: residual(mid, dim)
