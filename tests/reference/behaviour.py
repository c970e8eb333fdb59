"""What a refactor must not change, recorded by running the real command-line tools.

    python tests/reference/behaviour.py            # print the figures of this checkout
    python tests/reference/behaviour.py --record   # store them in behaviour.json

Three fixed-seed figures: the final weights of an `experiment=tiny` run (a SHA-256 over
every parameter, in name order), the `train/loss` of 20 steps of the DDPM recipe, and
the samples of `ddpm.sample` on the tiny run. The fused kernels are built with
-march=native, so bitwise equality holds on one CPU model; behaviour.json keys the figures
by the CPU, and tests/test_behaviour.py compares them bitwise where the CPU matches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RECORD = Path(__file__).with_name("behaviour.json")
# experiment=tiny seed=3 as the flat-package code saved it: config and final checkpoint.
PRE_LAYOUT_RUN = Path(__file__).with_name("pre_layout_run")
# Float32 products throughout, so that a CPU without AVX512-BF16 computes the same sums and
# the figures compare to float rounding on any CPU (tests/test_kernels.py checks bf16's).
FLOAT32 = "runtime.conv_precision=float32"
TINY_RUN = ["experiment=tiny", "seed=3", FLOAT32]
# the DDPM recipe (the default before flow matching), as recorded
DEFAULT_20 = ["experiment=quick_ddpm", "trainer.minutes=null", "trainer.steps=20", FLOAT32]
DEFAULT_20 += ["trainer.log_every=1"]
DEFAULT_20 += ["trainer.sample_every=0", "trainer.checkpoint_every=0", "trainer.sample_n=10"]
SAMPLE_ARGS = ["--n", "6", "--seed", "5"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tool(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def weights_sha256(ckpt: Path) -> str:
    """SHA-256 over every parameter's name, dtype, shape and bytes, in name order."""
    import mindspore as ms

    params = ms.load_checkpoint(str(ckpt))
    params.pop("meta", None)
    digest = hashlib.sha256()
    for name in sorted(params):
        value = params[name].asnumpy()
        digest.update(f"{name}|{value.dtype}|{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()


def losses(run_dir: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars("train/loss")]


def measure(work: Path) -> dict:
    """Run the three fixed-seed jobs in `work` and return their figures."""
    tiny, default = work / "tiny", work / "default"
    tool("ddpm.run", *TINY_RUN, f"hydra.run.dir={tiny}")
    tool("ddpm.sample", str(tiny), *SAMPLE_ARGS, "--out", str(work / "samples"))
    tool("ddpm.run", *DEFAULT_20, f"hydra.run.dir={default}")
    final = (tiny / "checkpoints" / "latest").read_text().strip()
    images = np.load(work / "samples" / "samples_ddim.npz")["images"]
    return {
        "tiny_weights_sha256": weights_sha256(tiny / "checkpoints" / final),
        "default_20_losses": losses(default),
        "tiny_samples_sha256": hashlib.sha256(images.tobytes()).hexdigest(),
        "tiny_samples_mean": float(images.astype(np.float64).mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--record", action="store_true", help="store the figures in behaviour.json")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        figures = measure(Path(work))
    print(json.dumps(figures, indent=2))
    if args.record:
        stored = json.loads(RECORD.read_text()) if RECORD.is_file() else {}
        stored[cpu_model()] = figures
        RECORD.write_text(json.dumps(stored, indent=2) + "\n")


if __name__ == "__main__":
    main()
