"""Drop-in cells that run the fused kernels when `active()`, else the built-in ops."""

from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from ddpm.nn.kernels.ops import active, bf16, primitives

# The convolution and dx run in the kernels on planes of KERNEL_MIN_PIXELS or more; dw
# from KERNEL_DW3_MIN_PIXELS for a 3x3 kernel and from KERNEL_DW_MIN_PIXELS for other
# sizes. Below them MindSpore's own ops are as fast or faster (experiments/cpu_speed.md,
# "Small planes" and "Vectors along the channels").
KERNEL_MIN_PIXELS = 4 * 4
KERNEL_DW3_MIN_PIXELS = 4 * 4
KERNEL_DW_MIN_PIXELS = 28 * 28


class _Convolution(nn.Cell):
    """y = conv(x, w) + bias, stride 1, zero padding K//2, and dx by the kernels; dw and dbias
    by the kernel from KERNEL_DW3_MIN_PIXELS for a 3x3 kernel and KERNEL_DW_MIN_PIXELS for
    others, else by MindSpore's own gradients of Conv2D and BiasAdd (graph optimisation
    drops the forward and dx that GradOperation also builds)."""

    def __init__(self, conv2d: ops.Conv2D, bias_add: ops.BiasAdd | None, float32: bool) -> None:
        super().__init__()
        chosen = primitives().conv_bfloat16 if bf16() and not float32 else primitives().conv_float32
        self.conv, self.input_grad = chosen.conv, chosen.input_grad
        self.filter_grad = chosen.filter_grad
        self.builtin = _BiasedConvolution(conv2d, bias_add)
        self.grads = ops.GradOperation(get_all=True, sens_param=True)

    def construct(self, x: Tensor, w: Tensor, bias: Tensor) -> Tensor:
        return self.conv(x, w, bias)

    def bprop(self, x, w, bias, out, dout):
        dx = self.input_grad(dout, w)
        pixels = x.shape[2] * x.shape[3]  # a constant of the graph, as is the kernel's size
        gate = KERNEL_DW3_MIN_PIXELS if w.shape[2] == 3 else KERNEL_DW_MIN_PIXELS
        if pixels >= gate:
            dw, dbias = self.filter_grad(x, dout, w)
            return dx, dw, dbias
        if self.builtin.bias_add is None:  # a constant of zeros, whose gradient is dropped
            return dx, self.grads(self.builtin)(x, w, dout)[1], ops.zeros_like(bias)
        _, dw, dbias = self.grads(self.builtin)(x, w, bias, dout)
        return dx, dw, dbias


class _BiasedConvolution(nn.Cell):
    """MindSpore's Conv2D, and BiasAdd where there is a bias, for their gradients."""

    def __init__(self, conv2d: ops.Conv2D, bias_add: ops.BiasAdd | None) -> None:
        super().__init__()
        self.conv2d, self.bias_add = conv2d, bias_add

    def construct(self, x, w, bias=None):
        y = self.conv2d(x, w)
        return y if self.bias_add is None else self.bias_add(y, bias)


class Conv2d(nn.Conv2d):
    """nn.Conv2d(C_in, C_out, K, stride 1, padding=K//2, bias) with the same parameters.

    Fused (K odd > 1), on planes of KERNEL_MIN_PIXELS or more, the convolution with its bias
    and its input gradient run the kernels (cpu_kernels.cc, Conv and ConvInputGrad), and so
    do its weight and bias gradients (ConvFilterGrad) for a 3x3 kernel, or from
    KERNEL_DW_MIN_PIXELS for others; on smaller planes it is nn.Conv2d as is. In the train
    step MindSpore's convolutions ran at 35-120 GFLOP/s on the U-Net's 28x28 layers (18-56
    channels) and 75-145 on its 14x14 ones; the kernels reach about 130-180 there. At 7x7
    and 14x14 MindSpore's dw ran at 55-75 GFLOP/s and the 3x3 dw kernel at 100-175
    (experiments/cpu_speed.md, "Vectors along the channels").

    The kernels' products are bf16 where `bf16()` says so when the cell is built, unless
    `float32`: a layer that reads x_t itself keeps float32 products, since rounding the
    input to bf16 (a relative step of 2^-8) hides the noise of the smallest levels.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        has_bias: bool = True,
        float32: bool = False,
    ):
        pad = kernel // 2
        super().__init__(
            in_channels, out_channels, kernel, pad_mode="pad", padding=pad, has_bias=has_bias
        )
        self.fused = kernel % 2 == 1 and kernel > 1 and active()
        bias_add = self.bias_add if has_bias else None
        self.convolve = _Convolution(self.conv2d, bias_add, float32) if self.fused else None
        # Without a bias the kernels add zeros; the gradient taken for them is dropped.
        self.zero_bias = None if has_bias else Tensor(np.zeros(out_channels, np.float32))

    def construct(self, x: Tensor) -> Tensor:
        # x.shape is a constant of the compiled graph, so this picks one path at compile time.
        if not self.fused or x.shape[2] * x.shape[3] < KERNEL_MIN_PIXELS:
            return super().construct(x)
        return self.convolve(x, self.weight, self.bias if self.has_bias else self.zero_bias)


class DepthwiseConv2d(nn.Conv2d):
    """nn.Conv2d(C, C, K, group=C, padding=K//2, bias) with the same parameters."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__(
            channels,
            channels,
            kernel,
            pad_mode="pad",
            padding=kernel // 2,
            group=channels,
            has_bias=True,
        )
        self.fused = kernel % 2 == 1 and active()
        self.depthwise = primitives().depthwise_conv if self.fused else None

    def construct(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.depthwise(x, self.weight, self.bias)
        return super().construct(x)

    def shifted(self, x: Tensor, shift: Tensor) -> Tensor:
        """conv(x) + shift, shift [B, C]: fused, the shift joins the bias inside the kernel."""
        if self.fused:
            return self.depthwise(x, self.weight, self.bias + shift)
        return super().construct(x) + shift[:, :, None, None]


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm (Wu & He 2018) with the same parameters (gamma, beta).

    With `silu`, SiLU (Elfwing et al. 2018) follows, as in a ResNet block: fused, inside the
    kernel, whose backward recomputes the pre-activation instead of keeping it.
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, silu: bool = False):
        super().__init__(num_groups, num_channels, eps=eps)
        self.fused = active()
        self.act = nn.SiLU() if silu else nn.Identity()  # the built-in path's activation
        kernel = "group_norm_silu" if silu else "group_norm"
        self.group_norm = getattr(primitives(), kernel) if self.fused else None
        # The kernel reads G from this tensor's length and eps from its values.
        self.spec = Tensor(np.full(num_groups, eps, np.float32))

    def construct(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.group_norm(x, self.gamma, self.beta, self.spec)[0]
        return self.act(super().construct(x))

    def modulated(self, x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        """GroupNorm(x) (1 + scale) + shift, scale and shift [B, C] (FiLM, Perez et al. 2018).

        Fused, the kernel takes the per-sample affine gamma (1 + scale), beta (1 + scale) +
        shift, so no activation-sized product or sum is formed.
        """
        if self.fused:
            gain = scale + 1.0
            gamma, beta = self.gamma * gain, self.beta * gain + shift  # [B, C]
            return self.group_norm(x, gamma, beta, self.spec)[0]
        y = super().construct(x) * (scale + 1.0)[:, :, None, None] + shift[:, :, None, None]
        return self.act(y)


class Softmax(nn.Cell):
    """Softmax over axis -1 or -2."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        if axis not in (-1, -2):
            raise ValueError(f"Softmax supports axis -1 or -2, got {axis}")
        self.axis = axis
        self.fused = active()
        self.softmax = primitives().softmax if self.fused else None

    def construct(self, x: Tensor) -> Tensor:
        if not self.fused:
            return ops.softmax(x, self.axis)
        shape = x.shape
        inner = 1 if self.axis == -1 else shape[-1]
        y = self.softmax(x.reshape((-1, shape[self.axis], inner)))  # [O, L, I]
        return y.reshape(shape)


class GELU(nn.GELU):
    """GELU in its exact form, x Phi(x) (Hendrycks & Gimpel 2016): nn.GELU(approximate=False)."""

    def __init__(self) -> None:
        super().__init__(approximate=False)
        self.fused = active()
        self.fused_gelu = primitives().gelu if self.fused else None

    def construct(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.fused_gelu(x)
        return super().construct(x)


class ChannelLayerNorm(nn.Cell):
    """LayerNorm over channels only, with a learned gain [1, C, 1, 1] (The Annotated
    Diffusion Model's LayerNorm before linear attention)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.gain = Parameter(Tensor(np.ones((1, dim, 1, 1), np.float32)), name="gain")
        self.eps = eps
        self.fused = active()
        self.channel_norm = primitives().channel_norm if self.fused else None
        self.spec = Tensor(np.full(1, eps, np.float32))  # the kernel reads eps from here

    def construct(self, x: Tensor) -> Tensor:
        if self.fused:
            return self.channel_norm(x, self.gain, self.spec)[0]
        mean = x.mean(axis=1, keep_dims=True)
        var = ((x - mean) ** 2).mean(axis=1, keep_dims=True)
        return (x - mean) * ops.rsqrt(var + self.eps) * self.gain
