"""ddpm: config-driven denoising diffusion experiments on MindSpore.

The layout, one concern a module:

  registry.py, schema.py   one registry per group; the keys each option declares
  build.py       config -> objects: checks the whole config, then builds each part
  schedules.py, objectives.py, diffusion.py, losses.py, samplers.py   the diffusion math
  nn/            time embedding, blocks, attention, the U-Net
  kernels/       fused C++ CPU kernels, built on first use
  data/          file formats, dataset sources, the mindspore.dataset pipeline
  train_step.py, reverse_step.py   the compiled train and reverse steps
  trainer.py     the fit loop: logging, sampling, checkpoints
  logger.py, checkpoint.py, atomic.py, metrics.py, runtime.py, distributed.py, budget.py
  runs.py        a run folder's saved config; cli.py the tools' argument types and errors
  quality/       the feature network, FD/IS/precision/recall, bits/dim
  run.py, sample.py, evaluate.py, fit_features.py, compare.py, launch.py   the CLIs
  sweep.py, stats.py, plots.py   a sweep's runs, seed intervals and tests, compare.png
  bench/         the benchmark and its PyTorch twin (nothing else imports them)
"""

import os
import platform

# Runtime settings that must be in the environment before MindSpore (and its libgomp)
# load; each is set only if the user has not set it. `ENV_SET_HERE` lists the ones set
# here. DDPM_ENV_DEFAULTS=0 sets none (`ddpm.bench` runs its PyTorch twin so).
_defaults = {
    # The fused CPU kernels (ddpm.kernels) run on OpenMP threads. libgomp's default spin
    # after each kernel competes with MindSpore's own worker threads: the seed's train
    # step took 1145 ms with it against 569 ms with passive waiting.
    "OMP_WAIT_POLICY": "PASSIVE",
}
if platform.machine().lower() in ("x86_64", "amd64"):
    # On AVX-512 CPUs MindSpore hands oneDNN plain NCHW tensors and every k>1 convolution
    # falls back to oneDNN's reference kernel (~20x slower). Capping the ISA at AVX2
    # selects the gemm:jit path.
    _defaults["ONEDNN_MAX_CPU_ISA"] = "AVX2"
_apply = os.environ.get("DDPM_ENV_DEFAULTS", "1") != "0"
ENV_SET_HERE = tuple(name for name in _defaults if _apply and name not in os.environ)
for _name in ENV_SET_HERE:
    os.environ[_name] = _defaults[_name]

__version__ = "0.1.0"
