"""Config -> objects. The only library module that knows OmegaConf.

Each builder receives its own config section (as a plain dict) plus values passed to it
explicitly, never the whole config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn
from omegaconf import DictConfig, OmegaConf

from ddpm import kernels
from ddpm.data import ImageData, load_images
from ddpm.data.pipeline import steps_per_epoch
from ddpm.diffusion import GaussianDiffusion
from ddpm.distributed import World
from ddpm.losses import LOSSES, loss_weights
from ddpm.nn import ATTENTIONS, BLOCKS
from ddpm.nn.unet import UNet, attention_factory
from ddpm.quality.bpd import NegativeElbo
from ddpm.quality.evaluator import Evaluator
from ddpm.quality.feature_net import load as load_feature_space
from ddpm.quality.feature_net import to_model_space
from ddpm.registry import ConfigError, Registry
from ddpm.reverse_step import ReverseStep
from ddpm.samplers import SamplerPlan, make_plan
from ddpm.schedule_lr import cosine_lr
from ddpm.schedules import make_betas
from ddpm.train_step import DenoisingLoss, TrainStep
from ddpm.trainer import RunParts, Trainer, TrainerConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
MODELS = Registry("model")
MODELS.register("unet")(UNet)
TRAINERS = Registry("trainer")
TRAINERS.register("default")(Trainer)
MODEL_GROUPS = ("schedule", "objective", "block", "attention", "model")


def section(cfg: DictConfig, group: str) -> dict[str, Any]:
    return OmegaConf.to_container(cfg[group], resolve=True)  # type: ignore[return-value]


def configure_runtime(runtime: dict[str, Any], mode: str | None = None) -> None:
    """Apply the runtime section: device, execution mode (or `mode`), fused CPU kernels."""
    ms.set_device(runtime["device"])
    graph = (mode or runtime["mode"]) == "graph"
    ms.set_context(mode=ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    kernels.use(runtime.get("cpu_kernels", True))  # runs saved before the key: the default


def _call(group: str, fn, *args, **kwargs):
    """Call a builder; a bad keyword becomes a ConfigError that names the group."""
    try:
        return fn(*args, **kwargs)
    except TypeError as err:
        raise ConfigError(f"bad option in config group '{group}': {err}") from err


def build_diffusion(schedule: dict[str, Any], objective: dict[str, Any]) -> GaussianDiffusion:
    params = {k: v for k, v in schedule.items() if k != "name"}
    betas = _call("schedule", make_betas, schedule["name"], **params)
    return GaussianDiffusion(betas, objective=objective["name"])


def build_network(
    model: dict[str, Any],
    block: dict[str, Any],
    attention: dict[str, Any],
    channels: int,
    image_size: int,
) -> UNet:
    """The U-Net for `channels` x image_size^2 inputs, from the block and attention registries."""
    dim, mults = int(model["dim"]), tuple(int(m) for m in model["dim_mults"])
    if dim <= 0 or not mults or min(mults) <= 0:
        raise ConfigError(f"model.dim and model.dim_mults must be positive, got {dim}, {mults}")
    factor = 2 ** (len(mults) - 1)
    if image_size % factor:
        raise ConfigError(
            f"dataset.image_size={image_size} is not divisible by {factor}, the "
            f"U-Net's downsampling for {len(mults)} levels (model.dim_mults={list(mults)})"
        )
    make_block_cls = BLOCKS.get(block["name"])
    block_params = {k: v for k, v in block.items() if k != "name"}
    widths = {model.get("init_dim") or dim, *(dim * m for m in mults)}
    groups = block_params.get("groups", 1)
    if any(w % groups for w in widths):
        raise ConfigError(
            f"block.groups={groups} must divide every U-Net width {sorted(widths)}; "
            "change block.groups or model.dim"
        )
    ATTENTIONS.get(attention["name"]), ATTENTIONS.get(attention["mid"])
    heads, dim_head = int(attention["heads"]), int(attention["dim_head"])
    levels = attention.get("levels")
    if levels is not None and not set(levels) <= set(range(len(mults))):
        raise ConfigError(f"attention.levels={levels} must be U-Net levels 0..{len(mults) - 1}")
    return _call(
        "model",
        MODELS.get(model["name"]),
        channels=channels,
        dim=dim,
        dim_mults=mults,
        init_dim=model.get("init_dim"),
        make_block=lambda i, o, t: _call("block", make_block_cls, i, o, t, **block_params),
        make_attention=attention_factory(attention["name"], heads, dim_head, levels),
        make_mid_attention=attention_factory(attention["mid"], heads, dim_head),
    )


def build_denoiser(cfg: DictConfig) -> tuple[GaussianDiffusion, UNet]:
    """The diffusion and a freshly initialised network of a composed or saved run config."""
    diffusion = build_diffusion(section(cfg, "schedule"), section(cfg, "objective"))
    network = build_network(
        section(cfg, "model"),
        section(cfg, "block"),
        section(cfg, "attention"),
        cfg.dataset.channels,
        cfg.dataset.image_size,
    )
    return diffusion, network


def build_loss_weights(loss: dict[str, Any], diffusion: GaussianDiffusion) -> np.ndarray:
    LOSSES.get(loss["name"])
    return loss_weights(
        diffusion.snr,
        diffusion.objective,
        loss["p2_gamma"],
        loss["p2_k"],
        loss.get("min_snr_gamma"),
    )


def build_data(dataset: dict[str, Any], split: str = "train") -> ImageData:
    images = load_images(
        dataset["name"],
        split=split,
        root=dataset.get("root"),
        download=dataset.get("download", True),
        image_size=dataset["image_size"],
        channels=dataset["channels"],
    )
    got = (images.shape[3], images.shape[1])
    if got != (dataset["channels"], dataset["image_size"]):
        raise ConfigError(
            f"dataset {dataset['name']!r} has {got[0]} channel(s) of size {got[1]}, "
            f"but dataset.channels={dataset['channels']}, image_size={dataset['image_size']}"
        )
    return ImageData(images, random_flip=dataset.get("random_flip", True))


def build_evaluator(trainer: dict[str, Any], dataset: dict[str, Any]) -> Evaluator | None:
    """The sample-quality evaluator when trainer.eval_n > 0 (needs a fitted feature network)."""
    if not trainer.get("eval_n"):
        return None
    return Evaluator(
        load_feature_space(dataset["name"], dataset["channels"], dataset["image_size"])
    )


def build_likelihood(
    trainer: dict[str, Any],
    dataset: dict[str, Any],
    diffusion: GaussianDiffusion,
    variance: str = "large",
) -> NegativeElbo | None:
    """The test-set bits/dim bound on the first trainer.bpd_n test images, when > 0."""
    if not trainer.get("bpd_n"):
        return None
    test = build_data(dataset, split="test").images[: int(trainer["bpd_n"])]
    timesteps = trainer.get("bpd_timesteps", 50)
    return NegativeElbo(to_model_space(test), diffusion, timesteps, variance)


def build_plan(sampler: dict[str, Any], diffusion: GaussianDiffusion) -> SamplerPlan:
    params = {k: v for k, v in sampler.items() if k not in ("name", "clip_denoised")}
    return _call("sampler", make_plan, diffusion, sampler["name"], **params)


def total_steps(trainer: dict[str, Any], num_images: int) -> int:
    """trainer.steps, or trainer.epochs converted with the dataset size and batch size."""
    if trainer.get("epochs"):
        return int(trainer["epochs"]) * steps_per_epoch(num_images, trainer["batch_size"])
    if int(trainer["steps"]) <= 0:
        raise ConfigError(f"trainer.steps must be > 0, got {trainer['steps']}")
    return int(trainer["steps"])


def build_optimizer(
    trainer: dict[str, Any], network: nn.Cell, steps: int
) -> tuple[nn.Adam, np.ndarray]:
    lrs = cosine_lr(steps, trainer["lr"], trainer["min_lr"], trainer["warmup_steps"])
    beta1, beta2 = trainer["adam_betas"]
    adam = nn.Adam(network.trainable_params(), learning_rate=Tensor(lrs), beta1=beta1, beta2=beta2)
    return adam, lrs


def model_fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """The config keys that define the model; a checkpoint only loads into a match."""
    keys = {g: section(cfg, g) for g in MODEL_GROUPS}
    keys["dataset"] = {k: cfg.dataset[k] for k in ("channels", "image_size")}
    return keys


def hparams(cfg: DictConfig, steps: int, diffusion: GaussianDiffusion) -> dict[str, Any]:
    """The run's row in TensorBoard's HParams table."""
    choice = {
        g: cfg[g].name
        for g in ("schedule", "block", "attention", "loss", "objective", "sampler", "dataset")
    }
    return {
        **choice,
        "timesteps": cfg.schedule.timesteps,
        "dim": cfg.model.dim,
        "dim_mults": str(list(cfg.model.dim_mults)),
        "batch_size": cfg.trainer.batch_size,
        "lr": cfg.trainer.lr,
        "steps": steps,
        "p2_gamma": cfg.loss.p2_gamma,
        "ema_decay": cfg.trainer.ema_decay,
        "seed": cfg.seed,
        "alpha_bar_T": diffusion.terminal_alpha_bar(),
    }


def build_trainer(cfg: DictConfig, run_dir: Path, world: World | None = None) -> Trainer:
    """Compose every part of a training run from the config (for this worker of `world`)."""
    diffusion = build_diffusion(section(cfg, "schedule"), section(cfg, "objective"))
    dataset, trainer = section(cfg, "dataset"), section(cfg, "trainer")
    data = build_data(dataset)
    steps = total_steps(trainer, len(data.images))
    c, h, _ = data.shape
    net_args = (section(cfg, "model"), section(cfg, "block"), section(cfg, "attention"), c, h)
    network, ema_network = build_network(*net_args), build_network(*net_args)
    loss = section(cfg, "loss")
    loss_fn = DenoisingLoss(
        network,
        diffusion,
        build_loss_weights(loss, diffusion),
        loss["name"],
        loss.get("delta", 1.0),
    )
    optimizer, lrs = build_optimizer(trainer, network, steps)
    sampler = section(cfg, "sampler")
    parts = RunParts(
        train_step=TrainStep(
            loss_fn, optimizer, trainer["grad_clip"], trainer.get("skip_nonfinite", False)
        ),
        ema_network=ema_network,
        reverse_step=ReverseStep(ema_network, diffusion.objective, sampler["clip_denoised"]),
        plan=build_plan(sampler, diffusion),
        diffusion=diffusion,
        data=data,
        lrs=lrs,
        hparams=hparams(cfg, steps, diffusion),
        config_text=OmegaConf.to_yaml(cfg, resolve=True),
        fingerprint=model_fingerprint(cfg),
        evaluator=build_evaluator(trainer, dataset),
        likelihood=build_likelihood(trainer, dataset, diffusion, sampler.get("variance", "large")),
    )
    keys = TrainerConfig.__dataclass_fields__
    tcfg = TrainerConfig(
        **{k: v for k, v in trainer.items() if k in keys and k != "steps"}, steps=steps
    )
    return TRAINERS.get(trainer["name"])(tcfg, parts, run_dir, seed=int(cfg.seed), world=world)
