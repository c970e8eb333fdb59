"""Can MindSpore's CPU convolutions compute in bf16? For experiments/cpu_speed.md.

    python experiments/cpu_speed/bf16_conv.py

Times a 3x3 Conv2D (batch 64, 56 channels at 28x28, graph mode) in float32, bfloat16 and
float16 and prints each one's time and its largest difference from float32, or why the
dtype failed. Run it as is (MindSpore sees ONEDNN_MAX_CPU_ISA from the shell, unset: all
of oneDNN's ISAs) and with ONEDNN_MAX_CPU_ISA=AVX2, the cap that `import ddpm` sets.
"""

import time

import mindspore as ms
import numpy as np
from mindspore import Tensor, ops

ms.set_context(mode=ms.GRAPH_MODE)
ms.set_device("CPU")


class Conv(ms.nn.Cell):
    def __init__(self) -> None:
        super().__init__()
        self.conv = ops.Conv2D(56, 3, pad_mode="same")

    def construct(self, x, w):
        return self.conv(x, w)


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 56, 28, 28), dtype=np.float32)
    w = 0.05 * rng.standard_normal((56, 56, 3, 3), dtype=np.float32)
    net = Conv()
    ref = net(Tensor(x), Tensor(w)).asnumpy()
    for dtype in (ms.float32, ms.bfloat16, ms.float16):
        try:
            a, b = Tensor(x).astype(dtype), Tensor(w).astype(dtype)
            net(a, b).asnumpy()
            start = time.perf_counter()
            for _ in range(5):
                y = net(a, b)
                y.asnumpy()
            ms_per_call = 1000 * (time.perf_counter() - start) / 5
            err = float(np.abs(y.astype(ms.float32).asnumpy() - ref).max())
            print(f"{dtype}: {ms_per_call:.1f} ms, max |y - y_fp32| {err:.2g}")
        except (TypeError, RuntimeError) as e:
            lines = [line for line in str(e).splitlines() if "fail" in line or "support" in line]
            print(f"{dtype}: failed: {' '.join(lines)[:300]}")


if __name__ == "__main__":
    main()
