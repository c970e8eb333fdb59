"""Shared fixtures: the real composed config, made tiny, and a MindSpore runtime for tests."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
import mindspore as ms
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mindspore import Tensor, nn, ops

from ddpm.config.groups import CONF_DIR, DDPM_RECIPE, asks_for_ddpm, default_section, resolve
from ddpm.data.build import dataset_classes
from ddpm.diffusion import samplers
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.objectives import OBJECTIVES
from ddpm.diffusion.samplers import SAMPLERS, SamplerPlan
from ddpm.diffusion.schedules import SCHEDULES
from ddpm.diffusion.schedules import make_betas as schedule_betas
from ddpm.nn import kernels
from ddpm.nn.build import denoiser
from ddpm.runtime import spin
from ddpm.training.build import build_parts, build_trainer

# Overrides that keep every option of every group tiny: two levels of width 8 and 16.
TINY = [
    "model.dim=8",
    "model.dim_mults=[1,2]",
    "attention.heads=1",
    "attention.dim_head=8",
    "attention.levels=null",
    "schedule.timesteps=100",
    "trainer.steps=4",
    "trainer.minutes=null",
    "trainer.batch_size=8",
    "trainer.log_every=2",
    "trainer.sample_n=4",
    "trainer.warmup_steps=1",
    "trainer.checkpoint_every=0",
]


def compose_config(*overrides: str, tiny: bool = True):
    """The default recipe made tiny; its DDPM twin unless a formulation or experiment is
    given, as `python -m ddpm.run` does for commands that name DDPM's groups."""
    tiny_overrides = TINY if tiny else []
    if asks_for_ddpm(list(overrides)) or not any(
        o.startswith(("formulation=", "experiment=")) for o in overrides
    ):
        tiny_overrides = [DDPM_RECIPE, *tiny_overrides]
    if "attention=none" in overrides:  # it takes no heads or dim_head
        tiny_overrides = [
            o for o in tiny_overrides if not o.startswith(("attention.heads", "attention.dim_head"))
        ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*tiny_overrides, *overrides])


def denoiser_of(cfg):
    """(diffusion, freshly initialised network) of a composed config; a conditional one
    over the dataset's classes."""
    run = resolve(cfg)
    return denoiser(run, dataset_classes(run["dataset"], run["conditioning"]))


def trainer_of(cfg, run_dir, world=None):
    """The Trainer of a composed config, built as ddpm.run builds it (no time budget)."""
    trainer, _ = build_trainer(build_parts(resolve(cfg)), run_dir, world)
    return trainer


def make_betas(name: str, timesteps: int, **keys) -> np.ndarray:
    """The betas of schedule `name` with its YAML keys, T = timesteps and `keys` overridden."""
    section = default_section("schedule", name, timesteps=timesteps, **keys)
    return schedule_betas(SCHEDULES.resolve(section))


def make_diffusion(
    schedule: str, timesteps: int, objective: str = "pred_noise", **keys
) -> GaussianDiffusion:
    objective_cls = OBJECTIVES.get(objective)
    return GaussianDiffusion(make_betas(schedule, timesteps, **keys), objective_cls())


def make_plan(diffusion: GaussianDiffusion, name: str, **keys) -> SamplerPlan:
    """The plan of sampler `name` with its YAML keys and `keys` overridden."""
    return samplers.make_plan(SAMPLERS.resolve(default_section("sampler", name, **keys)), diffusion)


@pytest.fixture(autouse=True, scope="session")
def mindspore_runtime():
    ms.set_device("CPU")
    yield


@pytest.fixture(autouse=True)
def pynative_mode():
    """Every test starts in PyNative mode (in-process tests skip graph compilation), even
    after a tool run in-process switched to graph mode."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield


@pytest.fixture(autouse=True)
def kernel_defaults():
    """Every test starts with the fused kernels on libgomp's threads, float32 products and
    MindSpore's own kernel-thread spin and yields, as after import, even after an in-process
    run applied its runtime section (runtime.conv_precision, kernel_pool, kernel_spin,
    kernel_pause)."""
    kernels.use(True)
    spin.set_kernel_spin(None)
    spin.set_kernel_pause(None)
    yield


@pytest.fixture
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


class OracleNoise(nn.Cell):
    """eps(x_t, t) = (x_t - sqrt(ab_t) x*) / sqrt(1 - ab_t): the perfect noise predictor for x*."""

    def __init__(self, diffusion, target):
        super().__init__()
        self.a = Tensor(diffusion.sqrt_alphas_cumprod.astype(np.float32))
        self.s = Tensor(diffusion.sqrt_one_minus_alphas_cumprod.astype(np.float32))
        self.target = Tensor(target)

    def construct(self, x, t, y):
        a = ops.gather(self.a, t, 0)[:, None, None, None]
        s = ops.gather(self.s, t, 0)[:, None, None, None]
        return (x - a * self.target) / s


@pytest.fixture
def oracle_noise():
    """The OracleNoise class: a network that knows the one training image."""
    return OracleNoise


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    """A real feature network fitted on 12,000 Fashion-MNIST images, in a private cache
    that the test processes of one session share (pytest-xdist workers fit it once)."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    cache = root / "feature_cache"
    with open(root / "feature_cache.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other workers wait for the first one's fit
        if not (cache / "features" / "fashion_mnist" / "meta.json").is_file():
            fit = ["ddpm.fit_features", "dataset=fashion_mnist", "--epochs", "2"]
            proc = subprocess.run(
                [sys.executable, "-m", *fit, "--limit", "12000"],
                env={**os.environ, "DDPM_CACHE": str(cache)},
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert "test accuracy" in proc.stdout
    return cache


# A tiny class-conditional flow-matching run, guided inside an interval, with post-hoc EMA
# snapshots every 3 of its 9 steps: the export and post-hoc EMA tests share it (they run
# on one worker: xdist_group "flow_run").
FLOW_RUN = [
    "experiment=tiny", "formulation=flow", "sampler=heun", "sampler.steps=3",
    "conditioning=class", "sampler.guidance=2.0", "sampler.guidance_interval=[0.3,0.8]",
    "trainer.steps=9", "trainer.posthoc_ema=[0.05,0.1]", "trainer.posthoc_every=3",
]  # fmt: skip


@pytest.fixture(scope="session")
def flow_run(tmp_path_factory):
    from ddpm.api import train

    return train(FLOW_RUN, tmp_path_factory.mktemp("flow_run"))
