"""One dense 3x3 convolution at a time, the kernels against MindSpore's ops.

    python experiments/cpu_speed/conv_ops.py fwd [B,Ci,Co,H ...]   # forward and dx, then dw
    python experiments/cpu_speed/conv_ops.py dw                    # dw only
    PRECISION=bfloat16 python experiments/cpu_speed/conv_ops.py fwd  # the bf16 products

Each op runs as a graph of its own (median of 15 calls) and is checked against MindSpore's
op. Such a graph allocates its output afresh on every call, which the ops inside a network
graph do not, so these times overstate MindSpore's in-graph cost on small planes; compare
kernels inside the network with ab_gate.py and ab_sample.py (experiments/cpu_speed.md).
"""

import os
import sys
import time

import ddpm  # noqa: F401  (sets the oneDNN and OpenMP variables first)

# isort: split
import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from ddpm.nn.kernels.ops import primitives

DEFAULT_SHAPES = [
    (32, 64, 64, 7),
    (32, 128, 64, 7),
    (32, 64, 128, 7),
    (32, 32, 32, 14),
    (1000, 64, 64, 7),
    (1000, 128, 64, 7),
]


class Op(nn.Cell):
    """A kernel's op as a graph; `first` keeps only its first output (dw of (dw, dbias))."""

    def __init__(self, op, first=False):
        super().__init__()
        self.op, self.first = op, first

    def construct(self, *args):
        out = self.op(*args)
        return out[0] if self.first else out


class Conv(nn.Cell):
    """MindSpore's convolution and bias, as the kernels' Conv computes them."""

    def __init__(self, co):
        super().__init__()
        self.conv = ops.Conv2D(co, 3, pad_mode="pad", pad=1)
        self.bias_add = ops.BiasAdd()

    def construct(self, x, w, bias):
        return self.bias_add(self.conv(x, w), bias)


class ConvDx(nn.Cell):
    def __init__(self, ci, x_shape):
        super().__init__()
        self.dx = ops.Conv2DBackpropInput(ci, 3, pad_mode="pad", pad=1)
        self.shape = x_shape

    def construct(self, dy, w):
        return self.dx(dy, w, self.shape)


class ConvDw(nn.Cell):
    def __init__(self, co):
        super().__init__()
        self.net, self.bias = Conv(co), Tensor(np.zeros(co, np.float32))
        self.grads = ops.GradOperation(get_all=True, sens_param=True)

    def construct(self, x, dy, w):
        return self.grads(self.net)(x, w, self.bias, dy)[1]


def median_time(f, *args, n=15):
    f(*args).asnumpy()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        f(*args).asnumpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU", jit_config={"jit_level": "O0"})
    kernels = getattr(primitives(), "conv_" + os.environ.get("PRECISION", "float32"))
    rng = np.random.default_rng(0)
    given = [tuple(map(int, s.split(","))) for s in sys.argv[2:]]
    for B, ci, co, H in given or DEFAULT_SHAPES:
        x = Tensor(rng.standard_normal((B, ci, H, H), np.float32))
        w = Tensor(0.1 * rng.standard_normal((co, ci, 3, 3), np.float32))
        dy = Tensor(rng.standard_normal((B, co, H, H), np.float32))
        bias = Tensor(rng.standard_normal(co, np.float32))
        gflop = 2 * B * H * H * ci * co * 9 / 1e9
        pairs = [("dw", Op(kernels.filter_grad, first=True), ConvDw(co), (x, dy, w))]
        if sys.argv[1:2] != ["dw"]:
            pairs = [
                ("fwd", Op(kernels.conv), Conv(co), (x, w, bias)),
                ("dx", Op(kernels.input_grad), ConvDx(ci, (B, ci, H, H)), (dy, w)),
                *pairs,
            ]
        for name, fused, builtin, args in pairs:
            a, b = fused(*args).asnumpy(), builtin(*args).asnumpy()
            err = np.abs(a - b).max() / np.abs(b).max()
            tf, tb = median_time(fused, *args), median_time(builtin, *args)
            print(
                f"{name} B{B} {ci}->{co} {H}x{H}: kernel {tf * 1e3:.2f} ms ({gflop / tf:.0f} "
                f"GFLOP/s), MindSpore {tb * 1e3:.2f} ms ({gflop / tb:.0f}), rel. error {err:.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
