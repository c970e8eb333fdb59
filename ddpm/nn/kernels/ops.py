"""The AOT custom ops of cpu_kernels.cc, each with its backward as a bprop."""

from __future__ import annotations

import ctypes
import functools
import math
import os
from pathlib import Path
from types import SimpleNamespace

import mindspore as ms
from mindspore import ops
from mindspore.ops import signature as sig

from ddpm.nn.kernels.build import library
from ddpm.runtime import spin

_requested = True
_bf16_requested = False
_pool_requested = False


def use(enabled: bool, bf16: bool = False, pool: bool = False) -> None:
    """Turn the fused kernels on or off for networks built after this call (the config's
    runtime.cpu_kernels), their convolutions' bf16 products (runtime.conv_precision), and
    their parallel regions on MindSpore's kernel pool (runtime.kernel_pool=mindspore);
    DDPM_CPU_KERNELS=0 in the environment keeps them off either way."""
    global _requested, _bf16_requested, _pool_requested
    _requested, _bf16_requested, _pool_requested = enabled, bf16, pool


def on_pool() -> bool:
    """Whether kernels built now run their parallel regions on MindSpore's pool: asked for,
    in graph mode (whose kernels run on an actor thread beside the pool's kernel threads),
    with the runtime hook that finds the pool loaded."""
    graph = ms.get_context("mode") == ms.GRAPH_MODE
    return _pool_requested and graph and spin.installed()


def active() -> bool:
    """Whether networks built now get the fused kernels."""
    if not _requested or os.environ.get("DDPM_CPU_KERNELS", "1") == "0":
        return False
    return ms.get_context("device_target") == "CPU" and library(on_pool()) is not None


def bf16() -> bool:
    """Whether convolutions built now multiply in bf16: asked for, the kernels active, and
    the library able to."""
    return _bf16_requested and active() and bf16_capable()


def bf16_capable() -> bool:
    """Whether the library that kernels built now use multiplies in bf16: compiled for a CPU
    with AVX512-BF16."""
    return _has_bf16(library(on_pool()))


@functools.cache
def _has_bf16(path: Path | None) -> bool:
    return path is not None and bool(ctypes.CDLL(str(path)).HasBf16())


def reload() -> None:
    """Forget the built library and its primitives: cells built after this call take them
    from build.SOURCE, build.FLAGS and $DDPM_KERNEL_CACHE as these are then."""
    library.cache_clear()
    _primitives.cache_clear()
    _adam_ema.cache_clear()
    _has_bf16.cache_clear()


def _same(x, *_):
    return x


def primitives() -> SimpleNamespace:
    """The Custom primitives of the library that kernels built now use; requires it compiled."""
    return _primitives(library(on_pool()))


@functools.cache
def _primitives(path: Path | None) -> SimpleNamespace:
    if path is None:
        raise RuntimeError("the fused CPU kernels are not available (see the warning above)")

    def aot(name, out_shape, out_dtype, bprop=None):
        return ops.Custom(f"{path}:{name}", out_shape, out_dtype, func_type="aot", bprop=bprop)

    # Depthwise convolution plus bias, stride 1, padding K//2: dx is the correlation of dy
    # with the flipped kernel; dw sums dy against shifted x.
    dw_input = aot("DepthwiseConvInputGrad", _same, _same)
    dw_filter = aot(
        "DepthwiseConvFilterGrad",
        lambda x, dy, w: (w, x[:2]),
        lambda x, dy, w: (w, w),
    )

    def depthwise_bprop(x, w, bias, out, dout):
        dw, db = dw_filter(x, dout, w)  # db [B, C]: per sample, summed for a bias [C]
        return dw_input(dout, w), dw, db if bias.ndim == 2 else db.sum(axis=0)

    # GroupNorm returns (y, mean, rstd); the statistics feed the backward only.
    gn_grad = aot(
        "GroupNormGrad",
        lambda x, gamma, dy, mean, rstd: (x, gamma, gamma),
        lambda x, gamma, dy, mean, rstd: (x, gamma, gamma),
    )

    def group_norm_bprop(x, gamma, beta, spec, out, dout):
        dx, dgamma, dbeta = gn_grad(x, gamma, dout[0], out[1], out[2])
        return dx, dgamma, dbeta, ops.zeros_like(spec)

    def group_norm_shape(x, gamma, beta, spec):
        return x, [x[0], spec[0]], [x[0], spec[0]]

    # The same followed by SiLU; its backward recomputes the pre-activation, so it needs beta.
    gn_silu_grad = aot(
        "GroupNormSiLUGrad",
        lambda x, gamma, beta, dy, mean, rstd: (x, gamma, gamma),
        lambda x, gamma, beta, dy, mean, rstd: (x, gamma, gamma),
    )

    def group_norm_silu_bprop(x, gamma, beta, spec, out, dout):
        dx, dgamma, dbeta = gn_silu_grad(x, gamma, beta, dout[0], out[1], out[2])
        return dx, dgamma, dbeta, ops.zeros_like(spec)

    # Softmax over the middle axis of [O, L, I]: dx = y (dy - sum_L dy y).
    softmax_grad = aot("SoftmaxGrad", _same, _same)

    def softmax_bprop(x, out, dout):
        return (softmax_grad(out, dout),)

    # LayerNorm over channels returns (y, mean, rstd) like GroupNorm, statistics per pixel.
    cn_grad = aot(
        "ChannelNormGrad",
        lambda x, gain, dy, mean, rstd: (x, gain),
        lambda x, gain, dy, mean, rstd: (x, gain),
    )

    def channel_norm_bprop(x, gain, spec, out, dout):
        dx, dgain = cn_grad(x, gain, dout[0], out[1], out[2])
        return dx, dgain, ops.zeros_like(spec)

    def channel_norm_shape(x, gain, spec):
        stats = [x[0], math.prod(x[2:])]
        return x, stats, stats

    gelu_grad = aot("GeluGrad", _same, _same)

    # Dense convolution, stride 1, zero padding K//2: y = x * w + bias and dx = dy * w', w'
    # the flipped, transposed kernel; their bprop is layers._Convolution's, which picks the
    # op for dw and dbias.
    # The Bf16 variants multiply in bf16 where the shapes suit (cpu_kernels.cc).
    def conv_ops(suffix):
        return SimpleNamespace(
            conv=aot(f"Conv{suffix}", lambda x, w, bias: [x[0], w[0], *x[2:]], _same),
            input_grad=aot(
                f"ConvInputGrad{suffix}", lambda dy, w: [dy[0], w[1], *dy[2:]], lambda dy, w: dy
            ),
            filter_grad=aot(
                f"ConvFilterGrad{suffix}", lambda x, dy, w: (w, w[:1]), lambda x, dy, w: (w, w)
            ),
        )

    def gelu_bprop(x, out, dout):
        return (gelu_grad(x, dout),)

    return SimpleNamespace(
        gelu=aot("Gelu", _same, _same, gelu_bprop),
        conv_float32=conv_ops(""),
        conv_bfloat16=conv_ops("Bf16"),
        channel_norm=aot(
            "ChannelNorm", channel_norm_shape, lambda x, *_: (x, x, x), channel_norm_bprop
        ),
        depthwise_conv=aot("DepthwiseConv", _same, _same, depthwise_bprop),
        group_norm=aot("GroupNorm", group_norm_shape, lambda x, *_: (x, x, x), group_norm_bprop),
        group_norm_silu=aot(
            "GroupNormSiLU", group_norm_shape, lambda x, *_: (x, x, x), group_norm_silu_bprop
        ),
        softmax=aot("Softmax", _same, _same, softmax_bprop),
    )


# Inputs before the per-parameter tensors, as AdamEma in cpu_kernels.cc reads them.
ADAM_EMA_HEAD = 7


def adam_ema(n: int) -> ops.Custom:
    """One optimiser step over n parameters: clipping, Adam and the EMA update in one op.

    Inputs: hyper [5] (beta1, beta2, eps, clip, skip_nonfinite), the learning-rate table, the
    step, beta1^t, beta2^t, the EMA decay, the loss sum, then the n parameters, first moments,
    second moments, EMA copies and gradients. Returns the global gradient norm [1]. The op
    writes the step, the beta powers and the first 4n tensors in place; its signature declares
    them written, so MindSpore orders every read of them before the op and every later read
    after it, as it does for Assign.
    """
    return _adam_ema(n, library(on_pool()))


@functools.cache
def _adam_ema(n: int, path: Path | None) -> ops.Custom:
    if path is None:
        raise RuntimeError("the fused CPU kernels are not available (see the warning above)")
    op = ops.Custom(f"{path}:AdamEma", lambda *_: [1], lambda hyper, *_: hyper, func_type="aot")
    written = {2, 3, 4, *range(ADAM_EMA_HEAD, ADAM_EMA_HEAD + 4 * n)}
    op.__mindspore_signature__ = tuple(
        sig.make_sig(f"input{i}", sig.sig_rw.RW_WRITE if i in written else sig.sig_rw.RW_READ)
        for i in range(ADAM_EMA_HEAD + 5 * n)
    )
    op.add_prim_attr("side_effect_mem", True)
    return op
