"""The config groups and the one place a composed config is checked.

Every config group is a registry (ddpm.config.registry) whose options declare their own
keys. `resolve` checks the whole composed (or saved) config against them, before data
loads or a graph compiles, and returns a `RunConfig`: typed, resolved options that the
builders (ddpm.training.build) receive one section at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from omegaconf import DictConfig, OmegaConf

from ddpm.config.errors import ConfigError
from ddpm.config.registry import Option, Registry
from ddpm.config.schema import NonNegativeInt, OneOf, check_section, keys_of
from ddpm.data import DATASETS
from ddpm.diffusion.conditioning import CONDITIONINGS
from ddpm.diffusion.formulations import FORMULATIONS
from ddpm.diffusion.losses import LOSSES
from ddpm.diffusion.objectives import OBJECTIVES
from ddpm.diffusion.ode_samplers import check_sampler
from ddpm.diffusion.samplers import SAMPLERS
from ddpm.diffusion.schedules import SCHEDULES
from ddpm.diffusion.variance import VARIANCES
from ddpm.evaluation.metrics import METRICS
from ddpm.nn import ATTENTIONS, BLOCKS
from ddpm.nn.unet import MODELS
from ddpm.runtime.device import RuntimeKeys, runtime_keys
from ddpm.training.config import TrainerConfig
from ddpm.training.loop import TRAINERS

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
# One registry per config group: the group's folder under conf/ holds one YAML per option.
GROUPS: dict[str, Registry] = {
    "formulation": FORMULATIONS,
    "schedule": SCHEDULES,
    "objective": OBJECTIVES,
    "variance": VARIANCES,
    "block": BLOCKS,
    "attention": ATTENTIONS,
    "loss": LOSSES,
    "sampler": SAMPLERS,
    "dataset": DATASETS,
    "conditioning": CONDITIONINGS,
    "model": MODELS,
    "trainer": TRAINERS,
}
# The groups that define the network and its diffusion: a checkpoint loads into a match.
MODEL_GROUPS = ("schedule", "objective", "block", "attention", "model")
# Numbers beside the option names in TensorBoard's HParams table, as dotted config keys.
HPARAM_KEYS = (
    "schedule.timesteps",
    "model.dim",
    "model.dim_mults",
    "trainer.batch_size",
    "trainer.lr",
    "trainer.minutes",
    "loss.p2_gamma",
    "trainer.ema_decay",
    "sampler.guidance",
    "seed",
)


@dataclass(frozen=True)
class TopLevelKeys:
    seed: NonNegativeInt  # weights, data order, timesteps and noise all follow it
    sweep_metric: Annotated[str, OneOf(tuple(METRICS))]  # what a run returns to a sweeper


@dataclass(frozen=True)
class RunConfig:
    """A checked config: one resolved option per group, plus the runtime and top-level keys,
    and the composed config it came from (saved with the run)."""

    options: dict[str, Option]
    trainer: TrainerConfig
    runtime: RuntimeKeys
    top: TopLevelKeys
    composed: DictConfig

    def __getitem__(self, group: str) -> Option:
        return self.options[group]

    def value(self, key: str) -> Any:
        """A dotted key's resolved value: `seed`, `trainer.lr`, `model.dim_mults`."""
        group, _, leaf = key.partition(".")
        if not leaf:
            return getattr(self.top, group)
        if group == "trainer":
            return getattr(self.trainer, leaf)
        option = self.options[group]
        return option.params[leaf] if leaf in option.params else getattr(option.shared, leaf)


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
    check_formulation(options, trainer)
    needs = METRICS[top.sweep_metric].needs
    if needs and not getattr(trainer, needs):
        raise ConfigError(
            f"sweep_metric={top.sweep_metric} is only computed with trainer.{needs} > 0"
        )
    return RunConfig(options, trainer, runtime_keys(section(cfg, "runtime")), top, cfg)


def check_formulation(options: dict[str, Option], trainer: TrainerConfig) -> None:
    """What a continuous formulation (edm, flow) refuses: DDPM's samplers, the p2 and
    min-SNR loss weights (it weights by its own lambda), a learned reverse variance and the
    bits/dim bound."""
    formulation = options["formulation"]
    built = formulation()
    check_sampler(built, options["sampler"], formulation.name)
    if built is None:  # DDPM
        return
    if options["variance"]() is not None:
        raise ConfigError(
            f"variance={options['variance'].name} is DDPM's reverse variance; "
            f"formulation={formulation.name} has none to learn: use variance=fixed"
        )
    loss = options["loss"].shared
    if loss.p2_gamma or loss.min_snr_gamma is not None:
        raise ConfigError(
            f"loss.p2_gamma / loss.min_snr_gamma weight DDPM's timesteps; formulation="
            f"{formulation.name} weights its levels by its own lambda: leave them 0 / null"
        )
    if trainer.bpd_n:
        raise ConfigError(
            f"trainer.bpd_n={trainer.bpd_n}: bits/dim is DDPM's variational bound, which "
            f"formulation={formulation.name} does not define; set trainer.bpd_n=0"
        )


def default_section(group: str, name: str, **overrides: Any) -> dict[str, Any]:
    """An option's section as its YAML file sets it, with `overrides` applied."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        GROUPS[group].get(name)  # an unknown name lists the valid ones
        raise ConfigError(f"no config file {path} for {group} {name!r}")
    return {**OmegaConf.to_container(OmegaConf.load(path)), **overrides}  # type: ignore[arg-type]


def saved_conditioning(cfg: DictConfig) -> Option:
    """The conditioning option of a composed or saved run config, resolved alone."""
    return CONDITIONINGS.resolve(section(cfg, "conditioning"))


LENGTH_KEYS = ("trainer.steps", "trainer.epochs")
DDPM_ONLY = ("schedule", "objective", "variance")  # groups that only formulation=ddpm uses


DDPM_RECIPE = "experiment=quick_ddpm"  # the default recipe's DDPM twin


def asks_for_ddpm(overrides: list[str]) -> bool:
    """The default recipe is flow matching, which has no schedule or objective. A command
    line that gives no experiment and sets formulation=ddpm, or sets the schedule, the
    objective or the variance and no formulation, asks for DDPM: ddpm.run adds DDPM_RECIPE, so
    `schedule=cosine block=resnet` trains DDPM."""
    given = dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)
    keys = {k.split(".")[0] for k in given}
    if "experiment" in keys:
        return False
    if "formulation" in keys:
        return given.get("formulation") == "ddpm"
    return bool(keys & set(DDPM_ONLY))


def check_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """trainer.minutes decides the run's length over steps and epochs, so overrides that set
    either of those while minutes is on (the default recipe's budget) are an error. So are
    overrides of the schedule, objective and variance groups under a continuous
    formulation, which does not use them."""
    keys = [o.split("=", 1)[0].lstrip("+") for o in overrides]
    unused = [o for o, key in zip(overrides, keys, strict=True) if key.split(".")[0] in DDPM_ONLY]
    formulation = FORMULATIONS.resolve(section(cfg, "formulation")) if unused else None
    if formulation is not None and formulation() is not None:
        raise ConfigError(
            f"{unused[0]}: formulation={formulation.name} does not use the schedule, "
            "objective or variance groups (they define DDPM's forward process, target and "
            "reverse variance)"
        )
    given = [o for o, key in zip(overrides, keys, strict=True) if key in LENGTH_KEYS]
    if given and cfg.trainer.get("minutes") is not None and "trainer.minutes" not in keys:
        raise ConfigError(
            f"{given[0]} has no effect while trainer.minutes={cfg.trainer.minutes} sets the "
            "run's length; add trainer.minutes=null to train a step or epoch count"
        )
