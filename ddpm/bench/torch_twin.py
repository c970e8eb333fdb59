"""The same U-Net and train step in PyTorch, for `python -m ddpm.bench` only.

Mirrors ddpm.nn layer for layer (same widths, kernels, norms, attention and time
embedding) so timings compare frameworks, not architectures. Nothing else imports torch.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def conv(c_in: int, c_out: int, k: int, groups: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, groups=groups, bias=bias)


class SinusoidalEmbedding(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half) / (half - 1))
        self.register_buffer("freqs", freqs[None, :])

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        args = t.float()[:, None] * self.freqs
        return torch.cat((args.sin(), args.cos()), dim=-1)


class ResnetBlock(nn.Module):
    def __init__(self, d_in: int, d_out: int, time_dim: int, groups: int = 8) -> None:
        super().__init__()
        self.time_mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, d_out * 2))
        self.conv1, self.norm1 = conv(d_in, d_out, 3), nn.GroupNorm(groups, d_out)
        self.conv2, self.norm2 = conv(d_out, d_out, 3), nn.GroupNorm(groups, d_out)
        self.res_conv = conv(d_in, d_out, 1) if d_in != d_out else nn.Identity()

    def forward(self, x, temb):
        scale, shift = self.time_mlp(temb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(self.conv1(x)) * (scale + 1) + shift)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.res_conv(x)


class ConvNextBlock(nn.Module):
    def __init__(self, d_in: int, d_out: int, time_dim: int, mult: int = 2, norm: bool = True):
        super().__init__()
        self.time_mlp = nn.Sequential(nn.GELU(), nn.Linear(time_dim, d_in))
        self.ds_conv = conv(d_in, d_in, 7, groups=d_in)
        self.net = nn.Sequential(
            nn.GroupNorm(1, d_in) if norm else nn.Identity(),
            conv(d_in, d_out * mult, 3),
            nn.GELU(),
            nn.GroupNorm(1, d_out * mult),
            conv(d_out * mult, d_out, 3),
        )
        self.res_conv = conv(d_in, d_out, 1) if d_in != d_out else nn.Identity()

    def forward(self, x, temb):
        h = self.ds_conv(x) + self.time_mlp(temb)[:, :, None, None]
        return self.net(h) + self.res_conv(x)


class FullAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_qkv = conv(dim, heads * dim_head * 3, 1, bias=False)
        self.to_out = conv(heads * dim_head, dim, 1)

    def forward(self, x):
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(x).chunk(3, dim=1))
        attn = (q.transpose(2, 3) * self.scale @ k).softmax(dim=-1)  # [B, heads, N, N]
        return self.to_out((v @ attn.transpose(2, 3)).reshape(b, -1, h, w))


class ChannelLayerNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1, dim, 1, 1))

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=1, unbiased=False, keepdim=True)
        return (x - mean) * (var + 1e-5).rsqrt() * self.gain


class LinearAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_qkv = conv(dim, heads * dim_head * 3, 1, bias=False)
        self.to_out = nn.Sequential(conv(heads * dim_head, dim, 1), ChannelLayerNorm(dim))

    def forward(self, x):
        b, _, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2) * self.scale
        k, v = k.softmax(dim=-1), v / (h * w)
        context = k @ v.transpose(2, 3)
        return self.to_out((context.transpose(2, 3) @ q).reshape(b, -1, h, w))


class PreNormResidual(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm, self.fn = nn.GroupNorm(1, dim), fn

    def forward(self, x):
        return x + self.fn(self.norm(x))


BLOCKS = {"resnet": ResnetBlock, "convnext": ConvNextBlock}
ATTENTIONS = {"full": FullAttention, "linear": LinearAttention}


def attention(kind: str, dim: int, section: dict[str, Any]) -> nn.Module:
    """The residual attention of `kind`, with the heads and dim_head of the section."""
    if kind == "none":
        return nn.Identity()
    return PreNormResidual(dim, ATTENTIONS[kind](dim, section["heads"], section["dim_head"]))


class Level(nn.Module):
    def __init__(self, b1, b2, attn) -> None:
        super().__init__()
        self.block1, self.block2, self.attn = b1, b2, attn

    def forward(self, x, temb):
        return self.attn(self.block2(self.block1(x, temb), temb))


class UNet(nn.Module):
    """ddpm.nn.unet.UNet in PyTorch, built from the same config sections."""

    def __init__(
        self,
        model: dict[str, Any],
        block: dict[str, Any],
        attn: dict[str, Any],
        channels: int,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        dim, mults = model["dim"], model["dim_mults"]
        self.patch = model.get("patch_size", 1)
        channels *= self.patch**2
        init_dim = model.get("init_dim") or dim
        dims = [init_dim, *(dim * m for m in mults)]
        in_out = list(zip(dims[:-1], dims[1:], strict=True))
        time_dim, n = dim * 4, len(in_out)
        params = {k: v for k, v in block.items() if k != "name"}
        mk = lambda i, o: BLOCKS[block["name"]](i, o, time_dim, **params)  # noqa: E731
        levels = attn.get("levels")
        at = lambda d, lvl: attention(  # noqa: E731
            attn["name"] if levels is None or lvl in levels else "none", d, attn
        )
        self.init_conv = conv(channels, init_dim, 7)
        self.time_mlp = nn.Sequential(
            SinusoidalEmbedding(dim),
            nn.Linear(dim, time_dim),
            nn.GELU(),
            nn.Linear(time_dim, time_dim),
        )
        self.num_classes = num_classes
        if num_classes:  # row K: the null class
            self.class_emb = nn.Embedding(num_classes + 1, time_dim)
        self.downs = nn.ModuleList(
            Level(mk(i, o), mk(o, o), at(o, lv)) for lv, (i, o) in enumerate(in_out)
        )
        self.down_samplers = nn.ModuleList(
            nn.Identity() if lv == n - 1 else nn.Conv2d(o, o, 4, 2, 1)
            for lv, (_, o) in enumerate(in_out)
        )
        rev = list(reversed(list(enumerate(in_out))))
        self.ups = nn.ModuleList(Level(mk(o * 2, i), mk(i, i), at(i, lv)) for lv, (i, o) in rev)
        self.up_samplers = nn.ModuleList(
            nn.Identity() if lv == 0 else nn.ConvTranspose2d(i, i, 4, 2, 1) for lv, (i, _) in rev
        )
        mid = dims[-1]
        self.mid_block1, self.mid_block2 = mk(mid, mid), mk(mid, mid)
        self.mid_attn = attention(attn["mid"], mid, attn)
        self.final_block, self.final_conv = mk(init_dim, dim), conv(dim, channels, 1)

    def forward(self, x, t, y=None):
        temb = self.time_mlp(t)
        if self.num_classes:
            temb = temb + self.class_emb(torch.zeros_like(t) if y is None else y)
        if self.patch == 1:
            return self.denoise(x, temb)
        b, c, h, w, p = *x.shape, self.patch
        x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4)  # pixel unshuffle
        out = self.denoise(x.reshape(b, c * p * p, h // p, w // p), temb)
        out = out.reshape(b, c, p, p, h // p, w // p).permute(0, 1, 4, 2, 5, 3)
        return out.reshape(b, c, h, w)

    def denoise(self, x, temb):
        x = self.init_conv(x)
        skips = []
        for level, down in zip(self.downs, self.down_samplers, strict=True):
            x = level(x, temb)
            skips.append(x)
            x = down(x)
        x = self.mid_block2(self.mid_attn(self.mid_block1(x, temb)), temb)
        for level, up in zip(self.ups, self.up_samplers, strict=True):
            x = up(level(torch.cat((x, skips.pop()), dim=1), temb))
        return self.final_conv(self.final_block(x, temb))


class TrainStep:
    """Huber loss on the noise, global-norm clipping, Adam and EMA, as ddpm.training.step."""

    def __init__(self, net: UNet, sqrt_ab, sqrt_1m_ab, lr=1e-4, grad_clip=1.0, ema_decay=0.999):
        self.net, self.grad_clip, self.decay = net, grad_clip, ema_decay
        self.sqrt_ab = torch.as_tensor(sqrt_ab, dtype=torch.float32)
        self.sqrt_1m_ab = torch.as_tensor(sqrt_1m_ab, dtype=torch.float32)
        self.opt = torch.optim.Adam(net.parameters(), lr=lr)
        self.ema = [p.detach().clone() for p in net.parameters()]

    def __call__(self, x0, t, noise):
        a = self.sqrt_ab[t][:, None, None, None]
        s = self.sqrt_1m_ab[t][:, None, None, None]
        loss = F.smooth_l1_loss(self.net(a * x0 + s * noise, t), noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        self.opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, list(self.net.parameters()), 1 - self.decay)
        return loss
