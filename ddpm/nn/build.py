"""The network and diffusion of a resolved config, each from its own sections."""

from __future__ import annotations

from ddpm.config.errors import ConfigError
from ddpm.config.groups import RunConfig
from ddpm.config.registry import Option
from ddpm.diffusion.conditioning import is_conditional
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import make_betas
from ddpm.nn.attention import placement
from ddpm.nn.unet import UNet


def build_diffusion(
    schedule: Option,
    objective: Option,
    formulation: Option | None = None,
    variance: Option | None = None,
) -> GaussianDiffusion:
    """q(x_t | x_0) of the schedule's betas, with the objective's target and the reverse
    `variance` (fixed when None); or, with a continuous `formulation`, that formulation."""
    continuous = formulation() if formulation is not None else None
    learned = variance() if variance is not None else None
    return GaussianDiffusion(make_betas(schedule), objective(), continuous, learned)


def image_shape(dataset: Option) -> tuple[int, int]:
    """(channels, image_size) of a dataset option."""
    return dataset.shared.channels, dataset.shared.image_size


def build_network(
    model: Option,
    block: Option,
    attention: Option,
    dataset: Option,
    num_classes: int = 0,
    learns_variance: bool = False,
) -> UNet:
    """The U-Net for the dataset's images; class-conditional over num_classes > 0; with
    `learns_variance`, it also outputs the variance channels (ddpm.diffusion.variance)."""
    channels, image_size = image_shape(dataset)
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
    return model(channels, block, make_attention, make_mid_attention, num_classes, learns_variance)


def denoiser(run: RunConfig, classes: list[str] | None) -> tuple[GaussianDiffusion, UNet]:
    """The diffusion and a freshly initialised network of a resolved config; a conditional
    one over `classes` (ddpm.data.build.dataset_classes, or a checkpoint's)."""
    conditional = is_conditional(run["conditioning"])
    if conditional and not classes:
        raise ConfigError("a class-conditional model needs its class names")
    k = len(classes) if conditional else 0
    diffusion = build_diffusion(
        run["schedule"], run["objective"], run["formulation"], run["variance"]
    )
    parts = (run["model"], run["block"], run["attention"], run["dataset"])
    network = build_network(*parts, k, diffusion.variance is not None)
    return diffusion, network
