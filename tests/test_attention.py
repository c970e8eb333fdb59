"""The attention layers against the formulas, written out in numpy."""

from __future__ import annotations

import numpy as np
import pytest
from mindspore import Tensor

from ddpm.nn import kernels
from ddpm.nn.attention import FullAttention, LinearAttention


def softmax(a: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def conv1x1(x: np.ndarray, cell, bias: bool) -> np.ndarray:
    w = cell.weight.asnumpy()[:, :, 0, 0].astype(np.float64)  # [out, in]
    y = np.einsum("oi,bihw->bohw", w, x)
    return y + cell.bias.asnumpy()[None, :, None, None] if bias else y


def qkv(layer, x: np.ndarray, heads: int):
    b, _, h, w = x.shape
    parts = np.split(conv1x1(x, layer.to_qkv, bias=False), 3, axis=1)
    return [p.reshape(b, heads, -1, h * w) for p in parts]  # [B, heads, d, N] each


def full_attention(layer, x: np.ndarray, heads: int, dim_head: int) -> np.ndarray:
    # softmax(q^T k / sqrt(d)) applied to v (Vaswani et al. 2017, eq. 1).
    q, k, v = qkv(layer, x, heads)
    attn = softmax(np.einsum("bhdi,bhdj->bhij", q * dim_head**-0.5, k), axis=-1)
    out = np.einsum("bhdj,bhij->bhdi", v, attn).reshape(x.shape[0], -1, *x.shape[2:])
    return conv1x1(out, layer.to_out, bias=True)


def linear_attention(layer, x: np.ndarray, heads: int, dim_head: int) -> np.ndarray:
    # The seed's form: q softmaxed over d and scaled, k over N, v / N; out = (k v^T)^T q,
    # then a 1x1 conv and LayerNorm over channels with a gain.
    q, k, v = qkv(layer, x, heads)
    n = q.shape[-1]
    q, k, v = softmax(q, axis=-2) * dim_head**-0.5, softmax(k, axis=-1), v / n
    context = np.einsum("bhdn,bhen->bhde", k, v)
    out = np.einsum("bhde,bhdn->bhen", context, q).reshape(x.shape[0], -1, *x.shape[2:])
    conv_cell, norm = layer.to_out[0], layer.to_out[1]
    y = conv1x1(out, conv_cell, bias=True)
    mean, var = y.mean(axis=1, keepdims=True), y.var(axis=1, keepdims=True)
    return (y - mean) / np.sqrt(var + 1e-5) * norm.gain.asnumpy()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize(
    "layer_cls,reference", [(FullAttention, full_attention), (LinearAttention, linear_attention)]
)
def test_attention_matches_formula(graph_mode, layer_cls, reference, fused):
    heads, dim_head, dim = 2, 8, 6
    kernels.use(fused)
    try:
        layer = layer_cls(dim, heads=heads, dim_head=dim_head)
    finally:
        kernels.use(True)
    rng = np.random.default_rng(0)
    for p in layer.get_parameters():  # away from the ones-gain and small-init defaults
        p.set_data(Tensor(rng.standard_normal(p.shape).astype(np.float32)))
    x = rng.standard_normal((2, dim, 5, 7)).astype(np.float32)
    expected = reference(layer, x.astype(np.float64), heads, dim_head)
    np.testing.assert_allclose(layer(Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-4)
