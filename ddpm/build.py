"""Config -> objects.

Every config group is a registry (ddpm.registry) whose options declare their own keys.
`resolve` checks the whole composed config against them, before data loads or a graph
compiles, and the builders below each take the resolved options they need, never the
whole config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from mindspore import Tensor, nn
from omegaconf import DictConfig, OmegaConf

from ddpm.conditioning import CONDITIONINGS, is_conditional
from ddpm.data import DATASETS, ImageData, class_names, load_images, load_labels
from ddpm.data.pipeline import steps_per_epoch
from ddpm.diffusion import GaussianDiffusion
from ddpm.distributed import World
from ddpm.losses import LOSSES, loss_weights
from ddpm.metrics import METRICS
from ddpm.nn import ATTENTIONS, BLOCKS
from ddpm.nn.attention import placement
from ddpm.nn.unet import MODELS, UNet
from ddpm.objectives import OBJECTIVES
from ddpm.quality.bpd import NegativeElbo
from ddpm.quality.evaluator import Evaluator
from ddpm.quality.feature_net import load as load_feature_space
from ddpm.quality.feature_net import to_model_space
from ddpm.registry import ConfigError, Option, Registry
from ddpm.reverse_step import ReverseStep
from ddpm.runtime import RuntimeKeys, runtime_keys
from ddpm.samplers import SAMPLERS, make_plan
from ddpm.schedule_lr import cosine_lr
from ddpm.schedules import SCHEDULES, make_betas
from ddpm.schema import NonNegativeInt, OneOf, check_section, keys_of
from ddpm.train_step import DenoisingLoss, TrainStep
from ddpm.trainer import TRAINERS, RunParts, Trainer, TrainerConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# One registry per config group: the group's folder under conf/ holds one YAML per option.
GROUPS: dict[str, Registry] = {
    "schedule": SCHEDULES,
    "objective": OBJECTIVES,
    "block": BLOCKS,
    "attention": ATTENTIONS,
    "loss": LOSSES,
    "sampler": SAMPLERS,
    "dataset": DATASETS,
    "conditioning": CONDITIONINGS,
    "model": MODELS,
    "trainer": TRAINERS,
}
MODEL_GROUPS = ("schedule", "objective", "block", "attention", "model")


@dataclass(frozen=True)
class TopLevelKeys:
    seed: NonNegativeInt  # weights, data order, timesteps and noise all follow it
    sweep_metric: Annotated[str, OneOf(tuple(METRICS))]  # what a run returns to a sweeper


@dataclass(frozen=True)
class RunConfig:
    """A checked config: one resolved option per group, plus the runtime and top-level keys."""

    options: dict[str, Option]
    trainer: TrainerConfig
    runtime: RuntimeKeys
    top: TopLevelKeys

    def __getitem__(self, group: str) -> Option:
        return self.options[group]


def section(cfg: DictConfig, group: str) -> dict[str, Any]:
    if group not in cfg:
        raise ConfigError(f"the config has no {group!r} section")
    return OmegaConf.to_container(cfg[group], resolve=True)  # type: ignore[return-value]


def resolve(cfg: DictConfig) -> RunConfig:
    """Check every key of a composed (or saved) run config; ConfigError names the first
    that is off. Runs before any data loads or graph compiles."""
    known = [*GROUPS, "runtime", *keys_of(TopLevelKeys)]
    for key in cfg:
        if key not in known:
            raise ConfigError(f"{key}: not a config key; the config takes: {', '.join(known)}")
    options = {group: registry.resolve(section(cfg, group)) for group, registry in GROUPS.items()}
    top_values = {k: cfg[k] for k in keys_of(TopLevelKeys) if k in cfg}
    top = TopLevelKeys(**check_section(top_values, keys_of(TopLevelKeys), "", "the config"))
    trainer = TrainerConfig(**options["trainer"].params)
    needs = METRICS[top.sweep_metric].needs
    if needs and not getattr(trainer, needs):
        raise ConfigError(
            f"sweep_metric={top.sweep_metric} is only computed with trainer.{needs} > 0"
        )
    return RunConfig(options, trainer, runtime_keys(section(cfg, "runtime")), top)


def default_section(group: str, name: str, **overrides: Any) -> dict[str, Any]:
    """An option's section as its YAML file sets it, with `overrides` applied."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        GROUPS[group].get(name)  # an unknown name lists the valid ones
        raise ConfigError(f"no config file {path} for {group} {name!r}")
    return {**OmegaConf.to_container(OmegaConf.load(path)), **overrides}  # type: ignore[arg-type]


def build_diffusion(run: RunConfig) -> GaussianDiffusion:
    return GaussianDiffusion(make_betas(run["schedule"]), objective=run["objective"]())


def image_shape(run: RunConfig) -> tuple[int, int]:
    """(channels, image_size) of the run's dataset."""
    keys = run["dataset"].shared
    return keys.channels, keys.image_size


def saved_conditioning(cfg: DictConfig) -> Option:
    """The conditioning option of a composed or saved run config, resolved alone."""
    return CONDITIONINGS.resolve(section(cfg, "conditioning"))


def run_classes(run: RunConfig) -> list[str] | None:
    """The class names a conditional run learns (the dataset's); None when unconditional."""
    if not is_conditional(run["conditioning"]):
        return None
    dataset = run["dataset"]
    return class_names(dataset.name, dataset.params.get("root"))


def build_network(run: RunConfig, classes: list[str] | None = None) -> UNet:
    """The U-Net for the dataset's images, from the model, block and attention options;
    class-conditional over `classes` (default: the dataset's) under conditioning=class."""
    model, attention = run["model"], run["attention"]
    channels, image_size = image_shape(run)
    mults, patch = model.params["dim_mults"], model.params["patch_size"]
    levels = len(mults)
    if image_size % (patch * 2 ** (levels - 1)):
        raise ConfigError(
            f"dataset.image_size={image_size} is not divisible by {patch * 2 ** (levels - 1)}, "
            f"the U-Net's patch size ({patch}) times its downsampling for {levels} levels "
            f"(model.dim_mults={mults})"
        )
    chosen = attention.shared.levels
    if chosen is not None and not set(chosen) <= set(range(levels)):
        raise ConfigError(f"attention.levels={chosen} must be U-Net levels 0..{levels - 1}")
    make_attention, make_mid_attention = placement(attention)
    conditional = is_conditional(run["conditioning"])
    k = len(classes if classes is not None else run_classes(run)) if conditional else 0
    return model(channels, run["block"], make_attention, make_mid_attention, k)


def build_denoiser(
    cfg: DictConfig, classes: list[str] | None = None
) -> tuple[GaussianDiffusion, UNet]:
    """The diffusion and a freshly initialised network of a composed or saved run config."""
    run = resolve(cfg)
    return build_diffusion(run), build_network(run, classes)


def build_loss(run: RunConfig, network: nn.Cell, diffusion: GaussianDiffusion) -> DenoisingLoss:
    weights = loss_weights(diffusion.snr, diffusion.objective, run["loss"].shared)
    return DenoisingLoss(network, diffusion, run["loss"](), weights)


def build_data(dataset: Option, split: str = "train", labels: bool = False) -> ImageData:
    """The dataset's images (and, with `labels`, their classes) for training."""
    keys = dataset.shared
    images = load_images(
        dataset.name, split=split, image_size=keys.image_size, channels=keys.channels,
        **dataset.params,
    )  # fmt: skip
    got = (images.shape[3], images.shape[1])
    if got != (keys.channels, keys.image_size):
        raise ConfigError(
            f"dataset {dataset.name!r} has {got[0]} channel(s) of size {got[1]}, "
            f"but dataset.channels={keys.channels}, image_size={keys.image_size}"
        )
    y = load_labels(dataset.name, split=split, **dataset.params) if labels else None
    if y is not None and len(y) != len(images):
        raise ConfigError(f"dataset {dataset.name!r}: {len(y)} labels for {len(images)} images")
    return ImageData(images, random_flip=keys.random_flip, labels=y)


def build_evaluator(eval_n: int, dataset: Option, conditional: bool = False) -> Evaluator | None:
    """The sample-quality evaluator when eval_n > 0 (needs a fitted feature network); for a
    conditional model it also knows the test labels, for per-class FD."""
    if not eval_n:
        return None
    keys = dataset.shared
    space = load_feature_space(dataset.name, keys.channels, keys.image_size)
    test_labels = load_labels(dataset.name, split="test", **dataset.params) if conditional else None
    return Evaluator(space, test_labels=test_labels)


def likelihood_variance(sampler: Option) -> str:
    """The reverse variance the bound assumes: the DDPM sampler's, else beta_t ("large")."""
    return sampler.params.get("variance", "large")


def build_likelihood(
    bpd_n: int,
    bpd_timesteps: int | None,
    dataset: Option,
    diffusion: GaussianDiffusion,
    variance: str,
) -> NegativeElbo | None:
    """The test-set bits/dim bound on the first bpd_n test images, when > 0."""
    if not bpd_n:
        return None
    test = build_data(dataset, split="test").images[:bpd_n]
    return NegativeElbo(to_model_space(test), diffusion, bpd_timesteps, variance)


def total_steps(trainer: TrainerConfig, num_images: int) -> int:
    """trainer.steps, or trainer.epochs converted with the dataset size and batch size."""
    if trainer.epochs:
        return trainer.epochs * steps_per_epoch(num_images, trainer.batch_size)
    return trainer.steps


def build_optimizer(
    trainer: TrainerConfig, network: nn.Cell, steps: int
) -> tuple[nn.Adam, np.ndarray]:
    lrs = cosine_lr(steps, trainer.lr, trainer.min_lr, trainer.warmup_steps)
    beta1, beta2 = trainer.adam_betas
    adam = nn.Adam(network.trainable_params(), learning_rate=Tensor(lrs), beta1=beta1, beta2=beta2)
    return adam, lrs


def model_fingerprint(cfg: DictConfig, classes: list[str] | None = None) -> dict[str, Any]:
    """The config keys that define the model; a checkpoint only loads into a match. A
    conditional model adds its conditioning and class names (which sampling needs)."""
    keys = {g: section(cfg, g) for g in MODEL_GROUPS}
    keys["dataset"] = {k: cfg.dataset[k] for k in ("channels", "image_size")}
    if classes is not None:
        keys["conditioning"], keys["classes"] = section(cfg, "conditioning"), list(classes)
    return keys


def hparams(run: RunConfig, steps: int, diffusion: GaussianDiffusion) -> dict[str, Any]:
    """The run's row in TensorBoard's HParams table."""
    model, trainer = run["model"].params, run.trainer
    return {
        **{group: option.name for group, option in run.options.items() if group != "trainer"},
        "timesteps": run["schedule"].shared.timesteps,
        "dim": model["dim"],
        "dim_mults": str(model["dim_mults"]),
        "batch_size": trainer.batch_size,
        "lr": trainer.lr,
        "steps": steps,
        "minutes": trainer.minutes or 0.0,
        "p2_gamma": run["loss"].shared.p2_gamma,
        "ema_decay": trainer.ema_decay,
        "guidance": run["sampler"].shared.guidance,
        "seed": run.top.seed,
        "alpha_bar_T": diffusion.terminal_alpha_bar(),
    }


def build_trainer(
    cfg: DictConfig,
    run_dir: Path,
    world: World | None = None,
    budget: dict[str, Any] | None = None,
) -> Trainer:
    """Compose every part of a training run from the config (for this worker of `world`);
    a `budget` (ddpm.budget) fixes the step count.

    Everything is checked and built before the data loads, so a bad key costs no wait.
    """
    run = resolve(cfg)
    diffusion = build_diffusion(run)
    plan = make_plan(run["sampler"], diffusion)
    dataset, classes = run["dataset"], run_classes(run)
    conditional = classes is not None
    network, ema_network = build_network(run, classes), build_network(run, classes)
    loss_fn = build_loss(run, network, diffusion)
    data = build_data(dataset, labels=conditional)
    steps = budget["steps"] if budget else total_steps(run.trainer, len(data.images))
    trainer = dataclasses.replace(run.trainer, steps=steps)
    optimizer, lrs = build_optimizer(trainer, network, trainer.steps)
    sampler = run["sampler"]
    parts = RunParts(
        train_step=TrainStep(loss_fn, optimizer, trainer.grad_clip, trainer.skip_nonfinite),
        ema_network=ema_network,
        reverse_step=ReverseStep(
            ema_network, diffusion.objective, sampler.shared.clip_denoised, plan.guidance
        ),
        plan=plan,
        diffusion=diffusion,
        data=data,
        lrs=lrs,
        hparams=hparams(run, trainer.steps, diffusion),
        config_text=OmegaConf.to_yaml(cfg, resolve=True),
        fingerprint=model_fingerprint(cfg, classes),
        evaluator=build_evaluator(trainer.eval_n, dataset, conditional),
        likelihood=build_likelihood(
            trainer.bpd_n,
            trainer.bpd_timesteps,
            run["dataset"],
            diffusion,
            likelihood_variance(sampler),
        ),
        budget=budget,
        classes=classes or [],
        p_uncond=run["conditioning"]().p_uncond if conditional else 0.0,
    )
    return run["trainer"].entry(trainer, parts, run_dir, seed=run.top.seed, world=world)
