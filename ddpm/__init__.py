"""ddpm: config-driven denoising diffusion experiments on MindSpore.

From Python: `ddpm.train(overrides)` trains a run, `ddpm.load_run(path)` loads a saved one,
and a Run samples (`run.sample`) and evaluates (`run.evaluate`); see ddpm.api. The
command-line tools are `python -m ddpm.<tool>`; README.md maps the package.
"""

import os
import platform
import sys

# Runtime settings that must be in the environment before MindSpore (and its libgomp)
# load; each is set only if the user has not set it. `ENV_SET_HERE` lists the ones set
# here. DDPM_ENV_DEFAULTS=0 sets none (`ddpm.bench` runs its PyTorch twin so).
_defaults = {}
if "OMP_WAIT_POLICY" not in os.environ:
    # The fused CPU kernels (ddpm.nn.kernels) run on OpenMP threads. libgomp's default spin
    # (300,000 rounds) holds a core that MindSpore's own threads wait for; a short one
    # catches the next kernel of a step without a futex wake-up, and then the thread sleeps
    # (experiments/cpu_speed.md, "OpenMP's wait"). GOMP_SPINCOUNT counts only while
    # OMP_WAIT_POLICY is unset.
    _defaults["GOMP_SPINCOUNT"] = "1000"
if platform.machine().lower() in ("x86_64", "amd64"):
    # On AVX-512 CPUs MindSpore hands oneDNN plain NCHW tensors, for which every k > 1
    # convolution takes oneDNN's reference kernel; capping the ISA at AVX2 selects gemm:jit.
    _defaults["ONEDNN_MAX_CPU_ISA"] = "AVX2"
_apply = os.environ.get("DDPM_ENV_DEFAULTS", "1") != "0"
ENV_SET_HERE = tuple(name for name in _defaults if _apply and name not in os.environ)
for _name in ENV_SET_HERE:
    os.environ[_name] = _defaults[_name]

if sys.platform.startswith("linux"):
    # MindSpore's libraries bind to the kernel-spin hook only if it is loaded first
    # (runtime.kernel_spin; ddpm.runtime.spin).
    from ddpm.runtime import spin

    spin.install()

__version__ = "0.1.0"


def __getattr__(name: str):
    """ddpm.train, ddpm.load_run, ddpm.Run: imported on first use, so that `import ddpm`
    sets the variables above before anything loads MindSpore."""
    if name in ("train", "load_run", "Run", "Samples"):
        from ddpm import api

        return getattr(api, name)
    raise AttributeError(f"module 'ddpm' has no attribute {name!r}")
