"""The fused CPU kernels against MindSpore's built-in ops: values and gradients."""

from __future__ import annotations

import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ddpm.nn import kernels
from ddpm.nn.kernels import ops as kernel_ops

pytestmark = pytest.mark.skipif(
    kernels.library() is None, reason="no C++ compiler: the fused kernels cannot be built"
)


def grads_of(cell: nn.Cell, x: np.ndarray, cond=(), method: str | None = None):
    """(y, dL/dx, [dL/dcond..., dL/dparams...]) for L = sum(y * g), g fixed and random.

    y = cell(x), or cell.<method>(x, *cond) with `cond` inputs that also get gradients;
    the gradients are compiled.
    """
    fn = cell if method is None else getattr(cell, method)
    inputs = [Tensor(x), *(Tensor(c) for c in cond)]
    y = fn(*inputs)
    g = Tensor(np.random.default_rng(0).standard_normal(y.shape).astype(np.float32))
    params = cell.trainable_params()

    def loss(*inputs):
        return (fn(*inputs) * g).sum()

    positions = tuple(range(len(inputs)))
    grads = ms.jit(ms.grad(loss, grad_position=positions, weights=params or None))(*inputs)
    dinputs, dparams = grads if params else (grads, ())
    return y.asnumpy(), dinputs[0].asnumpy(), [t.asnumpy() for t in (*dinputs[1:], *dparams)]


def assert_same(fused, builtin, rtol=2e-5):
    """Same outputs and gradients, relative to each tensor's largest magnitude."""
    for a, b in zip(
        [fused[0], fused[1], *fused[2]], [builtin[0], builtin[1], *builtin[2]], strict=True
    ):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(1.0, float(np.abs(b).max())))


def twin_cells(make):
    """The same cell built with the kernels on and off, sharing initial parameter values."""
    kernels.use(True)
    fused = make()
    kernels.use(False)
    builtin = make()
    kernels.use(True)
    assert fused.fused and not builtin.fused
    for p, q in zip(fused.get_parameters(), builtin.get_parameters(), strict=True):
        assert p.name == q.name  # checkpoints load either way
        value = np.random.default_rng(1).standard_normal(p.shape).astype(np.float32)
        p.set_data(Tensor(value))
        q.set_data(Tensor(value))
    return fused, builtin


@pytest.mark.parametrize(
    "shape,kernel",
    [
        ((2, 3, 28, 28), 7),
        ((3, 5, 7, 9), 7),
        ((2, 4, 14, 14), 3),
        ((1, 2, 5, 17), 5),
        ((2, 3, 6, 11), 9),
    ],
)
def test_depthwise_conv_matches_grouped_conv(graph_mode, shape, kernel):
    fused, builtin = twin_cells(lambda: kernels.DepthwiseConv2d(shape[1], kernel))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert_same(grads_of(fused, x), grads_of(builtin, x))


@pytest.mark.parametrize(
    "groups,shape", [(1, (2, 6, 9, 9)), (2, (3, 8, 7, 7)), (8, (2, 16, 4, 5)), (4, (2, 4, 3, 3))]
)
@pytest.mark.parametrize("silu", [False, True])
def test_group_norm_matches_builtin(graph_mode, groups, shape, silu):
    fused, builtin = twin_cells(lambda: kernels.GroupNorm(groups, shape[1], silu=silu))
    # An offset mean tests the two-pass variance; the scale tests eps handling.
    x = 3.0 + 0.5 * np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert_same(grads_of(fused, x), grads_of(builtin, x))


@pytest.mark.parametrize("groups,shape", [(2, (3, 8, 7, 7)), (1, (2, 6, 5, 5))])
@pytest.mark.parametrize("silu", [False, True])
def test_modulated_group_norm_matches_builtin(graph_mode, groups, shape, silu):
    """GroupNorm(x) (1 + scale) + shift with the affine per sample, gradients to all inputs;
    with `silu`, SiLU of that (the ResNet block's first norm)."""
    fused, builtin = twin_cells(lambda: kernels.GroupNorm(groups, shape[1], silu=silu))
    rng = np.random.default_rng(3)
    x = 3.0 + 0.5 * rng.standard_normal(shape).astype(np.float32)
    cond = [rng.standard_normal(shape[:2]).astype(np.float32) for _ in range(2)]
    assert_same(grads_of(fused, x, cond, "modulated"), grads_of(builtin, x, cond, "modulated"))


@pytest.mark.parametrize("shape,kernel", [((2, 3, 28, 28), 7), ((3, 4, 5, 9), 3)])
def test_shifted_depthwise_conv_matches_builtin(graph_mode, shape, kernel):
    """conv(x) + shift with a shift per sample and channel (the ConvNeXt time input)."""
    fused, builtin = twin_cells(lambda: kernels.DepthwiseConv2d(shape[1], kernel))
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    cond = [rng.standard_normal(shape[:2]).astype(np.float32)]
    assert_same(grads_of(fused, x, cond, "shifted"), grads_of(builtin, x, cond, "shifted"))


@pytest.mark.parametrize("shape", [(2, 6, 7, 7), (3, 16, 4, 4), (2, 3, 5, 1)])
def test_channel_norm_matches_builtin(graph_mode, shape):
    # 7x7 = 49 positions leave a partial vector; the offset mean tests the two-pass variance.
    fused, builtin = twin_cells(lambda: kernels.ChannelLayerNorm(shape[1]))
    x = 3.0 + 0.5 * np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert_same(grads_of(fused, x), grads_of(builtin, x))


@pytest.mark.parametrize("axis,shape", [(-1, (2, 3, 37)), (-2, (2, 4, 8, 50)), (-2, (3, 5, 3))])
def test_softmax_matches_builtin(graph_mode, axis, shape):
    fused, builtin = twin_cells(lambda: kernels.Softmax(axis))
    x = 4.0 * np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = grads_of(fused, x)
    assert_same(out, grads_of(builtin, x))
    np.testing.assert_allclose(out[0].sum(axis=axis), 1.0, atol=1e-5)


def test_softmax_saturates_without_overflow(graph_mode):
    kernels.use(True)
    x = np.array([[[1000.0, 0.0, -1000.0], [-200.0, -200.0, 89.0]]], np.float32)
    y = kernels.Softmax(-1)(Tensor(x)).asnumpy()
    np.testing.assert_allclose(y, [[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], atol=1e-7)
    assert np.isfinite(y).all()


def test_switched_off_builds_builtin_ops():
    kernels.use(False)
    try:
        assert not kernels.active()
        assert not kernels.GroupNorm(2, 4).fused
    finally:
        kernels.use(True)
    assert kernels.active()


@pytest.mark.parametrize(("env", "key"), [("0", True), ("1", False), (None, False)])
def test_kernel_switch_and_key_turn_every_fused_op_off(env, key, monkeypatch):
    """DDPM_CPU_KERNELS=0 or runtime.cpu_kernels=false: a network and its train step are
    built from MindSpore's own ops only."""
    from ddpm.config.groups import resolve
    from ddpm.nn.build import denoiser
    from ddpm.runtime.device import configure_runtime
    from tests.conftest import compose_config

    if env is None:
        monkeypatch.delenv("DDPM_CPU_KERNELS", raising=False)
    else:
        monkeypatch.setenv("DDPM_CPU_KERNELS", env)
    overrides = (f"runtime.cpu_kernels={str(key).lower()}", "block=convnext", "conditioning=none")
    run = resolve(compose_config(*overrides))
    try:
        configure_runtime(run.runtime, mode="pynative")
        assert not kernels.active()
        _, net = denoiser(run, None)
        fused = [name for name, cell in net.cells_and_names() if getattr(cell, "fused", False)]
        assert not fused
    finally:
        kernels.use(True)
    monkeypatch.delenv("DDPM_CPU_KERNELS", raising=False)
    assert kernels.active()  # and with both on, the same network gets the kernels
    assert any(getattr(c, "fused", False) for _, c in denoiser(run, None)[1].cells_and_names())


def test_unknown_softmax_axis_is_refused():
    with pytest.raises(ValueError, match="axis -1 or -2"):
        kernels.Softmax(1)


def test_library_is_cached(tmp_path, monkeypatch):
    """A second build with the same source, compiler and CPU reuses the file."""
    from ddpm.nn.kernels import build

    monkeypatch.setenv("DDPM_KERNEL_CACHE", str(tmp_path))
    build.library.cache_clear()
    try:
        first = build.library()
        assert first is not None and first.parent == tmp_path
        stamp = first.stat().st_mtime_ns
        build.library.cache_clear()
        assert build.library() == first and first.stat().st_mtime_ns == stamp
        assert not list(tmp_path.glob("*.tmp"))
    finally:
        monkeypatch.undo()
        build.library.cache_clear()


def test_missing_compiler_falls_back_with_a_warning(monkeypatch, caplog):
    from ddpm.nn.kernels import build

    monkeypatch.setenv("CXX", "no-such-compiler-xyz")
    build.library.cache_clear()
    try:
        assert build.library() is None
        assert "no C++ compiler" in caplog.text
    finally:
        monkeypatch.undo()
        build.library.cache_clear()


def test_pynative_matches_graph():
    """The custom ops also run op by op (sampling and tests use PyNative)."""
    kernels.use(True)
    cell = kernels.GroupNorm(2, 4)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32))
    ref = ops.group_norm(x, 2, cell.gamma, cell.beta, 1e-5).asnumpy()
    np.testing.assert_allclose(cell(x).asnumpy(), ref, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 7, 29, 29), (5, 13), (7,)])
def test_gelu_matches_builtin(graph_mode, shape):
    # Offsets up to |x| = 9 cover both tails of erf; sizes not a multiple of 8 cover the tail,
    # and the first runs in parallel (>= 16384 elements).
    x = np.random.default_rng(2).uniform(-9, 9, shape).astype(np.float32)
    fused, builtin = twin_cells(kernels.GELU)
    assert_same(grads_of(fused, x), grads_of(builtin, x), rtol=1e-6)


@pytest.mark.parametrize(
    "shape,c_out,kernel",
    [
        ((2, 5, 28, 28), 11, 3),  # 28x28: the convolution and its gradients run the kernels
        ((2, 20, 28, 40), 9, 3),  # dx in several tiles of rows, and two of columns
        ((3, 1, 28, 30), 4, 7),  # one input channel, a 7x7 kernel, W != H
        ((2, 30, 14, 14), 20, 3),  # 14x14, one tile of columns; dw in a block of 32 channels
        ((3, 20, 7, 7), 30, 3),  # 7x7: tiles of positions across rows and images
        ((2, 8, 7, 7), 40, 3),  # dw in two blocks of 32 output channels, the second partial
        ((5, 1, 7, 7), 3, 3),  # one input channel: dw over the images in parts, then added
        ((2, 6, 9, 9), 7, 3),  # one tile of positions ends inside an image
        ((2, 5, 6, 9), 4, 5),  # H != W, a 5x5 kernel: two zero columns shared by neighbours
        ((2, 3, 4, 4), 5, 7),  # a 7x7 kernel wider than the plane
        ((2, 3, 3, 3), 4, 3),  # below KERNEL_MIN_PIXELS: MindSpore's own convolution
    ],
)
def test_conv2d_matches_builtin(graph_mode, shape, c_out, kernel):
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    fused, builtin = twin_cells(lambda: kernels.Conv2d(shape[1], c_out, kernel))
    assert_same(grads_of(fused, x), grads_of(builtin, x))


@pytest.mark.parametrize("shape,kernel", [((2, 6, 7, 7), 3), ((2, 6, 6, 9), 5)])
def test_conv2d_without_bias_matches_builtin(graph_mode, shape, kernel):
    """Without a bias the kernels add zeros, on the kernels' dw (3x3) and MindSpore's (5x5)."""
    x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
    fused, builtin = twin_cells(lambda: kernels.Conv2d(shape[1], 20, kernel, has_bias=False))
    assert_same(grads_of(fused, x), grads_of(builtin, x))


def test_eight_lane_kernels_match_builtin(graph_mode, monkeypatch, tmp_path):
    """CPUs without AVX-512 run the kernels' 8-lane paths (row and position tiles, dw in
    blocks of 8 channels): built here for x86-64-v3 (AVX2, FMA), their convolutions match
    MindSpore's on 7x7, 14x14 and 28x28 planes."""
    from ddpm.nn.kernels import build
    from ddpm.nn.kernels import ops as kernel_ops

    flags = [f if f != "-march=native" else "-march=x86-64-v3" for f in build.FLAGS]
    monkeypatch.setattr(build, "FLAGS", flags)
    monkeypatch.setenv("DDPM_KERNEL_CACHE", str(tmp_path))
    kernel_ops.reload()
    try:
        assert "x86-64-v3" in " ".join(build.FLAGS) and kernels.library().parent == tmp_path
        for shape, c_out in [((3, 20, 7, 7), 30), ((2, 30, 14, 14), 20), ((2, 5, 28, 28), 11)]:
            x = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
            fused, builtin = twin_cells(lambda c=shape[1], d=c_out: kernels.Conv2d(c, d, 3))
            assert_same(grads_of(fused, x), grads_of(builtin, x))
    finally:  # the next test builds its cells from the native library again
        monkeypatch.undo()
        kernel_ops.reload()


def test_scratch_kept_between_calls_starts_zeroed(graph_mode):
    """The kernels keep their scratch per thread between calls. A call after a larger one on
    other data, whose values are still in those buffers, gets its zero padding back: its
    outputs and gradients match MindSpore's, and equal those of the same call made before."""
    rng = np.random.default_rng(6)
    small = rng.standard_normal((2, 6, 28, 28)).astype(np.float32)
    large = 1e3 * rng.standard_normal((5, 6, 28, 36)).astype(np.float32)
    fused, builtin = twin_cells(lambda: kernels.Conv2d(6, 7, 3))
    before = grads_of(fused, small)
    grads_of(fused, large)
    after = grads_of(fused, small)
    assert_same(after, before, rtol=0)
    assert_same(after, grads_of(builtin, small))


class AdamEmaState(nn.Cell):
    """Parameters, Adam moments, EMA copies and step counters for the AdamEma op."""

    def __init__(self, shapes, lrs):
        super().__init__()
        rng = np.random.default_rng(3)

        def tensors(kind, draw=rng.standard_normal):
            return ms.ParameterTuple(
                ms.Parameter(Tensor(draw(size=s).astype(np.float32)), f"{kind}{i}")
                for i, s in enumerate(shapes)
            )

        self.p, self.m, self.e = tensors("p"), tensors("m"), tensors("e")
        self.v = tensors("v", lambda size: rng.uniform(0, 2, size))  # second moments are >= 0
        self.lrs = Tensor(np.asarray(lrs, np.float32))
        self.step = ms.Parameter(Tensor([1], ms.int32), "step")
        self.b1t = ms.Parameter(Tensor(0.9, ms.float32), "b1t")
        self.b2t = ms.Parameter(Tensor(0.999, ms.float32), "b2t")
        self.op = kernels.adam_ema(len(shapes))

    def construct(self, hyper, decay, loss_sum, grads):
        state = self.p + self.m + self.v + self.e + grads
        return self.op(hyper, self.lrs, self.step, self.b1t, self.b2t, decay, loss_sum, *state)

    def numpy_state(self):
        return [[t.asnumpy().copy() for t in group] for group in (self.p, self.m, self.v, self.e)]


def adam_ema_reference(state, grads, lr, b1t, b2t, hyper, decay):
    """Global-norm clipping, MindSpore's Adam update and the EMA, in float64 numpy."""
    beta1, beta2, eps, clip = hyper[:4]
    norm = np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads))
    scale = min(1.0, clip / (norm + 1e-6)) if clip > 0 else 1.0
    b1t, b2t = b1t * beta1, b2t * beta2
    lr_t = lr * np.sqrt(1 - b2t) / (1 - b1t)
    out = [[], [], [], []]
    for p, m, v, e, g in zip(*state, grads, strict=True):
        g = g * scale
        m = m + (g - m) * (1 - beta1)
        v = v + (g * g - v) * (1 - beta2)
        p = p - lr_t * m / (np.sqrt(v) + eps)
        for group, value in zip(out, (p, m, v, decay * e + (1 - decay) * p), strict=True):
            group.append(value)
    return norm, out


# 70000 elements span three of the kernel's work pieces; (1,) and (3, 5) are odd tails.
ADAM_SHAPES = [(70000,), (3, 5), (1,), (4, 3, 3, 3)]


@pytest.mark.parametrize("clip", [0.0, 0.5])
def test_adam_ema_matches_the_formulas(graph_mode, clip):
    lrs = [1e-3, 2e-3, 5e-4]
    cell = AdamEmaState(ADAM_SHAPES, lrs)
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal(s).astype(np.float32) for s in ADAM_SHAPES]
    hyper = np.array([0.9, 0.999, 1e-8, clip, 1.0], np.float32)
    before = cell.numpy_state()
    norm = cell(
        Tensor(hyper), Tensor(0.99, ms.float32), Tensor(1.0, ms.float32), tuple(map(Tensor, grads))
    )
    want_norm, want = adam_ema_reference(before, grads, lrs[1], 0.9, 0.999, hyper, 0.99)
    assert norm.asnumpy()[0] == pytest.approx(want_norm, rel=1e-6)
    for got_group, want_group in zip(cell.numpy_state(), want, strict=True):
        for got, expected in zip(got_group, want_group, strict=True):
            np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)
    assert cell.step.asnumpy()[0] == 2
    assert float(cell.b1t.asnumpy()) == pytest.approx(0.81)
    assert float(cell.b2t.asnumpy()) == pytest.approx(0.999**2)


@pytest.mark.parametrize("skip", [True, False])
def test_adam_ema_skips_a_nonfinite_step_when_asked(graph_mode, skip):
    cell = AdamEmaState(ADAM_SHAPES, [1e-3])
    grads = [np.ones(s, np.float32) for s in ADAM_SHAPES]
    grads[1][0, 0] = np.nan
    hyper = Tensor(np.array([0.9, 0.999, 1e-8, 1.0, float(skip)], np.float32))
    before = cell.numpy_state()
    norm = cell(hyper, Tensor(0.99, ms.float32), Tensor(1.0, ms.float32), tuple(map(Tensor, grads)))
    assert np.isnan(norm.asnumpy()[0])
    after = cell.numpy_state()
    pairs = [
        (a, b) for ga, gb in zip(after, before, strict=True) for a, b in zip(ga, gb, strict=True)
    ]
    unchanged = all(np.array_equal(a, b) for a, b in pairs)
    assert unchanged == skip
    assert cell.step.asnumpy()[0] == (1 if skip else 2)


def test_fma_peak_loop_reports_its_rate_and_method():
    """The benchmark's fp32 bound: a positive rate, with the width and threads it used."""
    from ddpm.bench.__main__ import fma_peak_gflops

    gflops, method = fma_peak_gflops(seconds=0.05, repeats=1)
    assert np.isfinite(gflops) and gflops > 0
    width = int(method.split(" x ")[1].split()[0])
    assert width in (1, 8, 16) and "threads" in method


@pytest.mark.parametrize(
    "env,spincount",
    [({}, "1000"), ({"OMP_WAIT_POLICY": "PASSIVE"}, "None"), ({"GOMP_SPINCOUNT": "50"}, "50")],
)
def test_import_sets_a_short_openmp_spin_unless_the_user_chose(env, spincount):
    """The kernels' OpenMP threads spin 1000 rounds before they sleep, unless the user set
    a wait policy (under which libgomp ignores GOMP_SPINCOUNT) or a spin count."""
    chosen = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "DDPM_ENV_DEFAULTS")
    base = {k: v for k, v in os.environ.items() if k not in chosen}
    code = "import os, ddpm; print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == spincount


bf16_only = pytest.mark.skipif(
    not kernel_ops.bf16_capable(),
    reason="the library multiplies in bf16 only on CPUs with AVX512-BF16",
)


def bf16_and_float32_cells(make):
    """The same cell built with bf16 products and with float32 ones, equal parameters."""
    kernels.use(True, bf16=True)
    try:
        low = make()
    finally:
        kernels.use(True)
    full = make()
    for p, q in zip(low.get_parameters(), full.get_parameters(), strict=True):
        q.set_data(p.data.copy())
    return low, full


@bf16_only
@pytest.mark.parametrize(
    "shape,c_out",
    [
        ((2, 32, 14, 14), 20),  # 14 wide: tiles of 14 positions x 32 channels
        ((3, 20, 7, 7), 40),  # 7 wide, 64 channels a tile; dx with 20 (a block of 32)
        ((2, 5, 28, 28), 24),  # 28 wide in two tiles; odd S pairs a channel with zeros
        ((2, 6, 9, 9), 12),  # no bf16 tiles for 9 wide or 12 channels: dw alone in bf16
    ],
)
def test_bf16_convolution_matches_float32_to_bf16_rounding(graph_mode, shape, c_out):
    """runtime.conv_precision=bfloat16: values and gradients within bf16's rounding of the
    float32 kernels' (8-bit mantissas: about 0.4% of a sum's largest terms), and not equal
    to them, so the bf16 products did run."""
    x = np.random.default_rng(9).standard_normal(shape).astype(np.float32)
    low, full = bf16_and_float32_cells(lambda: kernels.Conv2d(shape[1], c_out, 3))
    a, b = grads_of(low, x), grads_of(full, x)
    assert_same(a, b, rtol=2e-2)
    (dw_low, db_low), (dw_full, db_full) = a[2][-2:], b[2][-2:]
    assert np.abs(dw_low - dw_full).max() > 1e-6 * np.abs(dw_full).max()  # 3x3 dw: bf16 always
    np.testing.assert_array_equal(db_low, db_full)  # dbias sums dy in float32 either way
    tiled = c_out > 16 and shape[3] in (7, 14, 28)
    assert (np.abs(a[0] - b[0]).max() > 0) == tiled  # the forward pass: bf16 where tiled


def test_bf16_is_off_unless_asked_for_and_able():
    kernels.use(True)
    assert not kernel_ops.bf16()
    kernels.use(True, bf16=True)
    try:
        assert kernel_ops.bf16() == kernel_ops.bf16_capable()
        kernels.use(False, bf16=True)
        assert not kernel_ops.bf16()  # no kernels, no bf16 products
    finally:
        kernels.use(True)


@bf16_only
def test_the_layer_that_reads_x_t_keeps_float32_products():
    """With bf16 products, the U-Net's first convolution still multiplies in float32 (bf16
    would round away the noise of the smallest levels); every other fused one is bf16."""
    from ddpm.config.groups import resolve
    from ddpm.nn.build import denoiser
    from tests.conftest import compose_config

    kernels.use(True, bf16=True)
    try:
        _, net = denoiser(resolve(compose_config("conditioning=none")), None)
    finally:
        kernels.use(True)
    chosen = kernel_ops.primitives()
    assert net.init_conv.convolve.conv is chosen.conv_float32.conv
    others = [c for _, c in net.cells_and_names() if isinstance(c, kernels.Conv2d) and c.fused]
    others = [c for c in others if c is not net.init_conv]
    assert others and all(c.convolve.conv is chosen.conv_bfloat16.conv for c in others)
