"""Shared fixtures: the real composed config, made tiny, and a MindSpore runtime for tests."""

from __future__ import annotations

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
import mindspore as ms
import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from mindspore import Tensor, nn, ops

from ddpm import samplers
from ddpm.build import CONF_DIR, default_section
from ddpm.diffusion import GaussianDiffusion
from ddpm.objectives import OBJECTIVES
from ddpm.samplers import SAMPLERS, SamplerPlan
from ddpm.schedules import SCHEDULES
from ddpm.schedules import make_betas as schedule_betas

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
    tiny_overrides = TINY if tiny else []
    if "attention=none" in overrides:  # it takes no heads or dim_head
        tiny_overrides = [
            o for o in tiny_overrides if not o.startswith(("attention.heads", "attention.dim_head"))
        ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*tiny_overrides, *overrides])


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
