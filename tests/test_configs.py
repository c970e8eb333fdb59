"""Every option of every config group composes, builds, and runs a tiny forward pass."""

from pathlib import Path

import numpy as np
import pytest
from hydra.errors import ConfigCompositionException
from mindspore import Tensor

from ddpm.build import (
    MODELS,
    TRAINERS,
    build_data,
    build_denoiser,
    build_loss_weights,
    build_network,
    build_plan,
    section,
)
from ddpm.data import DATASETS
from ddpm.diffusion import OBJECTIVES
from ddpm.losses import LOSSES
from ddpm.nn import ATTENTIONS, BLOCKS
from ddpm.registry import ConfigError, Registry
from ddpm.samplers import SAMPLERS
from ddpm.schedules import SCHEDULES
from tests.conftest import CONF_DIR, compose_config

GROUPS = {
    "schedule": SCHEDULES.names(),
    "block": BLOCKS.names(),
    "attention": ATTENTIONS.names(),
    "loss": LOSSES.names(),
    "objective": list(OBJECTIVES),
    "sampler": SAMPLERS.names(),
    "dataset": DATASETS.names(),
    "model": MODELS.names(),
    "trainer": TRAINERS.names(),
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_yaml_files_match_registry_names(group):
    assert options(group) == sorted(GROUPS[group])
    for name in options(group):
        assert compose_config(f"{group}={name}", "dataset.root=/tmp")[group].name == name


def test_registry_rejects_duplicates():
    reg = Registry("thing")
    reg.register("a")(object)
    with pytest.raises(KeyError, match="already"):
        reg.register("a")(object)


def tiny_forward(cfg):
    diffusion, net = build_denoiser(cfg)
    size = cfg.dataset.image_size
    x = Tensor(
        np.random.default_rng(0).standard_normal(
            (2, cfg.dataset.channels, size, size), dtype=np.float32
        )
    )
    out = net(x, Tensor(np.array([0, diffusion.num_timesteps - 1], np.int32))).asnumpy()
    assert out.shape == x.shape and np.all(np.isfinite(out))
    weights = build_loss_weights(section(cfg, "loss"), diffusion)
    assert weights.shape == (diffusion.num_timesteps,)
    plan = build_plan(section(cfg, "sampler"), diffusion)
    assert plan.coefs.shape == (plan.num_steps, 5)


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("attention", ATTENTIONS.names())
def test_every_block_and_attention_builds(block, attention):
    tiny_forward(compose_config(f"block={block}", f"attention={attention}"))


@pytest.mark.parametrize("group", ["schedule", "loss", "objective", "sampler"])
def test_every_math_option_builds(group):
    for name in options(group):
        extra = ["schedule.zero_terminal_snr=true"] if name == "pred_v" else []
        tiny_forward(compose_config(f"{group}={name}", *extra))


def test_datasets_compose_with_their_shapes():
    assert compose_config("dataset=cifar10").dataset.image_size == 32
    tiny_forward(compose_config("dataset=cifar10"))


def test_seed_tutorial_experiment():
    cfg = compose_config("experiment=seed_tutorial", tiny=False)
    assert (cfg.schedule.name, cfg.schedule.timesteps) == ("linear", 200)
    assert (cfg.block.name, cfg.block.mult, cfg.attention.name) == ("convnext", 2, "linear")
    assert (cfg.loss.name, cfg.loss.p2_gamma, cfg.sampler.name) == ("huber", 0.0, "ddpm")
    assert (cfg.trainer.batch_size, cfg.trainer.epochs, cfg.trainer.lr) == (16, 10, 1e-4)
    assert cfg.trainer.min_lr == 1e-7 and cfg.dataset.random_flip


def test_unknown_option_lists_valid_ones():
    with pytest.raises(ConfigCompositionException) as err:
        compose_config("schedule=exponential")
    assert all(name in str(err.value) for name in ["cosine", "linear", "quadratic", "sigmoid"])


def test_unknown_name_inside_yaml_lists_valid_ones():
    cfg = compose_config("block.name=vit")
    with pytest.raises(ConfigError, match="unknown block 'vit'; valid options: convnext, resnet"):
        tiny_forward(cfg)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("schedule.timesteps=-3", "schedule.timesteps"),
        ("model.dim_mults=[1,2,2,2,2,2]", "not divisible"),
        ("block.groups=3", "block.groups=3"),
        ("sampler.steps=500", "sampler.steps"),
        ("model.dim=0", "positive"),
    ],
)
def test_bad_values_fail_before_training(override, match):
    with pytest.raises(ConfigError, match=match):
        tiny_forward(compose_config(override))


def test_builder_typo_names_the_group():
    cfg = compose_config("+schedule.beta_middle=0.1", "schedule=linear")
    with pytest.raises(ConfigError, match="config group 'schedule'"):
        tiny_forward(cfg)


def test_build_data_checks_shape():
    cfg = compose_config("dataset.image_size=32")
    with pytest.raises(ConfigError, match="image_size=32"):
        build_data(section(cfg, "dataset"))


def test_conf_has_no_stray_files():
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    assert groups == {*GROUPS, "experiment", "runtime", "hparams_search", "hydra"}
    launchers = {p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml")}
    assert launchers == {"joblib", "submitit_local", "submitit_slurm"}
    assert Path(CONF_DIR / "config.yaml").is_file()


def test_attention_levels_select_where_attention_goes():
    def count(levels):
        cfg = compose_config("attention=full", f"attention.levels={levels}")
        net = build_network(
            section(cfg, "model"), section(cfg, "block"), section(cfg, "attention"), 1, 28
        )
        return sum(1 for n, _ in net.cells_and_names() if n.endswith("fn") or n == "mid_attn.fn")

    assert count("null") == 5  # 2 down + 2 up levels + the middle
    assert count("[1]") == 3
    assert count("[]") == 1  # the middle attention stays
    with pytest.raises(ConfigError, match="attention.levels"):
        tiny_forward(compose_config("attention.levels=[5]"))


def test_default_is_the_quick_recipe():
    cfg = compose_config(tiny=False)
    assert (cfg.model.dim, list(cfg.attention.levels), cfg.trainer.steps) == (16, [1, 2], 800)
