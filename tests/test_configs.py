"""Every option of every config group composes, builds, and runs a tiny forward pass."""

import dataclasses
import inspect
import re
import shutil
from dataclasses import MISSING
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from mindspore import Tensor
from omegaconf import OmegaConf

from ddpm.config.groups import DDPM_RECIPE, GROUPS, resolve
from ddpm.config.registry import ConfigError, Registry
from ddpm.data.build import build_data
from ddpm.diffusion.ode_samplers import METHODS, ODE_COEFS, make_ode_plan
from ddpm.diffusion.samplers import COEFS, make_plan
from ddpm.nn import ATTENTIONS, BLOCKS
from ddpm.training.build import build_loss
from tests.conftest import CONF_DIR, TINY, compose_config, denoiser_of


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group", GROUPS)
def test_yaml_files_match_registry_names(group):
    assert options(group) == GROUPS[group].names()
    for name in options(group):
        assert compose_config(f"{group}={name}", "dataset.root=/tmp")[group].name == name


def test_registry_rejects_duplicates():
    reg = Registry("thing")
    reg.register("a")(object)
    with pytest.raises(KeyError, match="already"):
        reg.register("a")(object)


def tiny_forward(cfg):
    run = resolve(cfg)
    diffusion, net = denoiser_of(cfg)
    size = cfg.dataset.image_size
    x = Tensor(
        np.random.default_rng(0).standard_normal(
            (2, cfg.dataset.channels, size, size), dtype=np.float32
        )
    )
    t = Tensor(np.array([0, diffusion.num_timesteps - 1], np.int32))
    out = net(x, t, Tensor(np.zeros(2, np.int32))).asnumpy()
    assert out.shape == x.shape and np.all(np.isfinite(out))
    if diffusion.formulation is not None:  # edm, flow: levels instead of timesteps
        plan = make_ode_plan(run["sampler"], diffusion.formulation)
        assert plan.coefs.shape == (plan.num_steps, len(ODE_COEFS))
        return
    loss = build_loss(run["loss"], net, diffusion)
    assert loss.weights.shape == (diffusion.num_timesteps,)
    plan = make_plan(run["sampler"], diffusion)
    assert plan.coefs.shape == (plan.num_steps, len(COEFS))


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("attention", ATTENTIONS.names())
def test_every_block_and_attention_builds(block, attention):
    tiny_forward(compose_config(f"block={block}", f"attention={attention}"))


@pytest.mark.parametrize("group", ["formulation", "schedule", "loss", "objective", "sampler"])
def test_every_math_option_builds(group):
    for name in options(group):
        extra = ["schedule.zero_terminal_snr=true"] if name == "pred_v" else []
        if name in ("edm", "flow"):
            extra = ["sampler=heun"]
        if name in METHODS:  # the ODE samplers solve a continuous formulation
            extra = ["formulation=flow"]
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


def test_seed_tutorial_fast_keeps_the_tutorials_network_and_data():
    """Only the training and sampling recipe changes: EMA, schedule, objective, LR, sampler."""
    seed = compose_config("experiment=seed_tutorial", tiny=False)
    fast = compose_config("experiment=seed_tutorial_fast", tiny=False)
    for group in ("model", "block", "attention", "loss", "dataset"):
        assert fast[group] == seed[group], group
    assert fast.trainer.batch_size == seed.trainer.batch_size
    changed = {k for k in seed.trainer if seed.trainer[k] != fast.trainer[k]}
    assert changed <= {"epochs", "minutes", "lr", "min_lr", "warmup_steps", "grad_clip"} | {
        "ema_decay",
        "ema_warmup",
        "checkpoint_every",
    }
    assert (fast.schedule.name, fast.objective.name, fast.sampler.name) == (
        "cosine",
        "pred_v",
        "dpm_solver",
    )
    resolve(fast)  # and it is a valid config


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
        ("schedule.timesteps=-3", r"schedule.timesteps=-3: must be >= 2"),
        ("schedule.timesteps=abc", r"schedule.timesteps='abc': expected int"),
        ("schedule=linear schedule.beta_end=1.5", r"schedule.beta_end=1.5: must be > 0 and <= 1"),
        ("schedule=linear schedule.beta_start=0.1", r"beta_start=0.1 must be <= .*beta_end"),
        ("schedule.s=-1", r"schedule.s=-1.0: must be >= 0"),
        ("model.dim_mults=[1,2,2,2,2,2]", "not divisible"),
        ("model.dim_mults=[]", r"model.dim_mults=\[\]: must have at least 1"),
        ("model.dim_mults=[1,0]", r"model.dim_mults=\[1, 0\]: must be > 0"),
        ("model.dim=0", r"model.dim=0: must be > 0"),
        ("model.init_dim=-4", r"model.init_dim=-4: must be > 0"),
        ("model.patch_size=3", r"not divisible by 6, the U-Net's patch size \(3\)"),
        ("block.groups=3", "block.groups=3"),
        ("block.groups=0", r"block.groups=0: must be > 0"),
        ("block=convnext block.mult=0", r"block.mult=0: must be > 0"),
        ("attention.heads=0", r"attention.heads=0: must be > 0"),
        ("attention.levels=[5]", r"attention.levels=\[5\] must be U-Net levels 0..1"),
        ("attention.mid=cross", r"unknown attention 'cross'"),
        ("loss.delta=0", r"loss.delta=0.0: must be > 0"),
        ("loss.p2_gamma=-1", r"loss.p2_gamma=-1.0: must be >= 0"),
        ("loss.min_snr_gamma=0", r"loss.min_snr_gamma=0.0: must be > 0"),
        ("sampler.steps=500", "sampler.steps"),
        ("sampler.steps=0", r"sampler.steps=0: must be > 0"),
        ("sampler=ddim sampler.eta=-1", r"sampler.eta=-1.0: must be >= 0"),
        ("sampler=ddpm sampler.variance=medium", r"sampler.variance='medium': must be one of"),
        ("sampler.clip_denoised=maybe", r"sampler.clip_denoised='maybe': expected bool"),
        ("dataset.channels=2", r"dataset.channels=2: must be one of 1, 3"),
        ("dataset.image_size=-28", r"dataset.image_size=-28: must be > 0"),
        ("trainer.batch_size=0", r"trainer.batch_size=0: must be > 0"),
        ("trainer.lr=-1", r"trainer.lr=-1.0: must be > 0"),
        ("trainer.lr=nan", r"trainer.lr=nan: must be a finite number"),
        ("trainer.min_lr=1", r"trainer.min_lr=1.0 must be <= trainer.lr"),
        ("trainer.steps=0", r"trainer.steps=0: must be > 0"),
        ("trainer.epochs=0", r"trainer.epochs=0: must be > 0"),
        ("trainer.warmup_steps=-1", r"trainer.warmup_steps=-1: must be >= 0"),
        ("trainer.adam_betas=[0.9]", r"trainer.adam_betas=\[0.9\]: must have 2"),
        ("trainer.adam_betas=[0.9,1.0]", r"trainer.adam_betas=\[0.9, 1.0\]: must be >= 0 and < 1"),
        ("trainer.ema_decay=1.5", r"trainer.ema_decay=1.5: must be >= 0 and < 1"),
        ("trainer.grad_clip=-1", r"trainer.grad_clip=-1.0: must be >= 0"),
        ("trainer.log_every=0", r"trainer.log_every=0: must be > 0"),
        ("trainer.sample_every=-5", r"trainer.sample_every=-5: must be >= 0"),
        ("trainer.keep_checkpoints=0", r"trainer.keep_checkpoints=0: must be > 0"),
        ("trainer.eval_n=-1", r"trainer.eval_n=-1: must be >= 0"),
        ("runtime.mode=eager", r"runtime.mode='eager': must be one of graph, pynative"),
        ("runtime.jit_level=O2", r"runtime.jit_level='O2': must be one of O0, O1"),
        (
            "runtime.conv_precision=float16",
            r"runtime.conv_precision='float16': must be one of float32, bfloat16",
        ),
        ("runtime.kernel_spin=-1", r"runtime.kernel_spin=-1: must be >= 0"),
        ("runtime.kernel_pause=-1", r"runtime.kernel_pause=-1: must be >= 0"),
        (
            "runtime.kernel_pool=tbb",
            r"runtime.kernel_pool='tbb': must be one of mindspore, openmp",
        ),
        ("seed=-1", r"seed=-1: must be >= 0"),
        ("sweep_metric=accuracy", r"sweep_metric='accuracy': must be one of final_loss"),
        ("sweep_metric=fd", r"sweep_metric=fd is only computed with trainer.eval_n > 0"),
    ],
)
def test_bad_values_fail_before_training(override, match):
    with pytest.raises(ConfigError, match=match):
        tiny_forward(compose_config(*override.split()))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["loss=mse", "+loss.delta=0.5"], "loss.delta: loss 'mse' does not take this key; "),
        (["attention=none", "+attention.heads=2"], "attention.heads: attention 'none' does not "),
        (["+schedule.beta_middle=0.1"], "schedule.beta_middle: schedule 'cosine' does not "),
        (["+trainer.lr_decay=0.1"], "trainer.lr_decay: trainer 'default' does not take"),
        (["+runtime.workers=2"], "runtime.workers: runtime does not take this key"),
        (["+lr=0.1"], "lr: not a config key"),
        (["~loss.p2_k"], "loss 'huber' needs loss.p2_k"),
    ],
)
def test_keys_an_option_does_not_take_are_errors_that_list_the_ones_it_does(overrides, message):
    with pytest.raises(ConfigError) as err:
        resolve(compose_config(*overrides))
    assert str(err.value).startswith(message)
    if "does not take" in message:
        group = overrides[-1].lstrip("+").split(".")[0]
        name = compose_config(*overrides)[group].get("name")
        accepted = GROUPS[group].shared_keys() | GROUPS[group].own_keys(name) if name else {}
        assert all(key in str(err.value) for key in accepted)


@pytest.mark.parametrize("group", GROUPS)
def test_defaults_live_in_the_yaml_alone(group):
    """Every option's YAML sets exactly the keys it declares; Python restates no default."""
    registry = GROUPS[group]
    for name in registry.names():
        yaml_keys = set(OmegaConf.load(CONF_DIR / group / f"{name}.yaml")) - {"name"}
        declared = set(registry.shared_keys()) | set(registry.own_keys(name))
        assert yaml_keys == declared, f"{group}/{name}.yaml"
        assert not python_defaults(registry._schemas[name]), f"{group}/{name}"
    if registry.shared:
        assert not python_defaults(registry.shared)


def python_defaults(declaration) -> list[str]:
    """The declared keys that carry a default in Python."""
    if dataclasses.is_dataclass(declaration):
        return [f.name for f in dataclasses.fields(declaration) if f.default is not MISSING]
    target = declaration.__init__ if inspect.isclass(declaration) else declaration
    params = inspect.signature(target).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is not p.empty]


@pytest.mark.parametrize("group", GROUPS)
def test_a_new_option_is_one_yaml_and_one_registration(group, tmp_path, monkeypatch):
    """The README's recipe, for every group: copy an option's YAML under a new name and
    register an entry under that name; nothing else is touched, and the option builds."""
    registry = GROUPS[group]
    base = "default" if group == "trainer" else registry.names()[0]
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    text = (conf / group / f"{base}.yaml").read_text().replace(f"name: {base}", "name: fresh")
    (conf / group / "fresh.yaml").write_text(text)
    monkeypatch.setitem(registry._entries, "fresh", registry.get(base))
    monkeypatch.setitem(registry._schemas, "fresh", registry._schemas[base])
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        overrides = [DDPM_RECIPE, *TINY, f"{group}=fresh"]
        if group == "attention" and base == "full":
            overrides.append("attention.levels=[1]")
        cfg = compose(config_name="config", overrides=overrides)
    assert resolve(cfg)[group].name == "fresh"
    if group not in ("dataset", "trainer"):
        tiny_forward(cfg)


def test_build_data_checks_shape():
    cfg = compose_config("dataset.image_size=32")
    with pytest.raises(ConfigError, match="image_size=32"):
        build_data(resolve(cfg)["dataset"])


def test_conf_has_no_stray_files():
    groups = {p.name for p in CONF_DIR.iterdir() if p.is_dir()}
    assert groups == {*GROUPS, "experiment", "runtime", "hparams_search", "hydra"}
    launchers = {p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml")}
    assert launchers == {"joblib", "submitit_local", "submitit_slurm"}
    assert Path(CONF_DIR / "config.yaml").is_file()


def test_patch_size_is_an_exact_pixel_unshuffle():
    """With patch_size 2 the blocks see [B, 4, 14, 14]; the reshapes in and out are inverse,
    and each patch's 4 pixels become 4 channels at one position."""
    _, net = denoiser_of(compose_config("model.patch_size=2"))
    seen = []
    net.denoise = lambda x, temb: seen.append(x) or x  # the patches, returned unchanged
    x = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 1, 28, 28)
    zeros = Tensor(np.zeros(2, np.int32))
    out = net(Tensor(x), zeros, zeros).asnumpy()
    np.testing.assert_array_equal(out, x)
    patches = seen[0].asnumpy()
    assert patches.shape == (2, 4, 14, 14)
    np.testing.assert_array_equal(patches[0, :, 3, 5], x[0, 0, 6:8, 10:12].reshape(-1))


def test_attention_levels_select_where_attention_goes():
    def count(levels):
        cfg = compose_config("attention=full", f"attention.levels={levels}")
        _, net = denoiser_of(cfg)
        return sum(1 for n, _ in net.cells_and_names() if n.endswith("fn") or n == "mid_attn.fn")

    assert count("null") == 5  # 2 down + 2 up levels + the middle
    assert count("[1]") == 3
    assert count("[]") == 1  # the middle attention stays
    with pytest.raises(ConfigError, match="attention.levels"):
        tiny_forward(compose_config("attention.levels=[5]"))


def test_default_is_the_quick_recipe_with_flow_matching():
    cfg = compose_config("experiment=quick", tiny=False)
    assert (cfg.model.dim, cfg.model.patch_size, list(cfg.attention.levels)) == (32, 2, [1])
    assert (cfg.formulation.name, cfg.sampler.name, cfg.sampler.steps) == ("flow", "heun", 10)
    assert (cfg.conditioning.name, cfg.sampler.guidance) == ("class", 3.0)
    assert list(cfg.sampler.guidance_interval) == [0.2, 0.8]
    assert cfg.dataset.random_flip is False and cfg.trainer.minutes == 7


def test_its_ddpm_twin_keeps_the_recipe_and_the_ddpm_choices():
    cfg, default = compose_config(tiny=False), compose_config("experiment=quick", tiny=False)
    assert (cfg.formulation.name, cfg.objective.name) == ("ddpm", "pred_v")
    assert (cfg.sampler.name, cfg.sampler.steps, cfg.sampler.guidance) == ("dpm_solver", 20, 4.0)
    for key in ("model", "attention", "trainer", "dataset", "conditioning"):
        assert cfg[key] == default[key], key


def test_naming_a_ddpm_group_without_a_formulation_asks_for_ddpm():
    from ddpm.config.groups import asks_for_ddpm

    assert asks_for_ddpm(["schedule=cosine", "block=resnet"])
    assert asks_for_ddpm(["objective.name=pred_x0"]) and asks_for_ddpm(["schedule.timesteps=50"])
    assert not asks_for_ddpm(["block=resnet", "trainer.lr=1e-3"])
    assert not asks_for_ddpm(["formulation=flow", "schedule=cosine"])  # refused later, by name
    assert asks_for_ddpm(["formulation=ddpm"]) and not asks_for_ddpm(["formulation=edm"])
    assert not asks_for_ddpm(["experiment=tiny", "schedule=linear"])


def test_a_step_count_under_the_default_time_budget_is_refused():
    """The default recipe trains for trainer.minutes; steps or epochs given with it would be
    silently ignored, so they are refused unless minutes is set on the command line too."""
    from ddpm.config.groups import check_overrides

    cfg = compose_config(tiny=False)
    refusal = r"trainer.steps=2000 has no effect .*trainer.minutes=null"
    with pytest.raises(ConfigError, match=refusal):
        check_overrides(cfg, ["block=convnext", "trainer.steps=2000"])
    check_overrides(cfg, ["trainer.steps=2000", "trainer.minutes=null"])  # no error
    check_overrides(cfg, ["trainer.lr=1e-3"])


@pytest.mark.parametrize(
    "overrides, refusal",
    [
        (["trainer.batch_size=10", "trainer.accumulate=4"], "into trainer.accumulate=4 equal"),
        (["trainer.accumulate=0"], "trainer.accumulate=0: must be > 0"),
        (["trainer.posthoc_ema=[0.05,0.5]"], "trainer.posthoc_ema"),
    ],
)
def test_accumulation_and_posthoc_ema_keys_are_checked(overrides, refusal):
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        resolve(compose_config(*overrides))
