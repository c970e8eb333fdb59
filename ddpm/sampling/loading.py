"""A saved run's config and EMA network, read back from its folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from mindspore import nn

from ddpm.config.errors import CheckpointError
from ddpm.config.groups import RunConfig
from ddpm.config.run_folder import RunFolder
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.runtime.device import configure_runtime
from ddpm.training import checkpoint
from ddpm.training.build import denoiser
from ddpm.training.step import load_ema


@dataclass
class SavedModel:
    diffusion: GaussianDiffusion
    network: nn.Cell  # with the EMA weights
    checkpoint: Path
    step: int
    classes: list[str]  # a conditional model's class names; [] for an unconditional one


def latest_checkpoint(run_dir: Path) -> Path:
    found = next(iter(checkpoint.candidates(RunFolder(run_dir).checkpoints)), None)
    if found is None:
        raise CheckpointError(f"no checkpoint under {RunFolder(run_dir).checkpoints}")
    return found


def load_model(run: RunConfig, ckpt: Path, portable: bool = False) -> SavedModel:
    """The EMA network of checkpoint `ckpt` of a run with the resolved config `run`,
    compiled in graph mode for sampling; `portable`: with MindSpore's built-in operators,
    not the fused kernels compiled for this machine (for an export)."""
    runtime = dataclasses.replace(run.runtime, cpu_kernels=False) if portable else run.runtime
    configure_runtime(runtime, mode="graph")
    params, meta = checkpoint.load(ckpt)
    classes = meta.get("fingerprint", {}).get("classes")  # saved by a conditional run
    diffusion, network = denoiser(run, classes)
    try:
        load_ema(network, params)
    except KeyError as err:
        raise CheckpointError(f"{ckpt} does not fit the run's model: {err}") from None
    return SavedModel(diffusion, network, ckpt, int(meta["step"]), classes or [])
