"""What a caller may change when sampling a saved run: the sampler, its keys, the labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig

from ddpm.config.errors import ConfigError
from ddpm.config.groups import default_section, saved_conditioning, section
from ddpm.config.registry import Option
from ddpm.diffusion.conditioning import (
    balanced_labels,
    check_guidance,
    class_index,
    is_conditional,
    per_class_labels,
)
from ddpm.diffusion.samplers import SAMPLERS

# The sampler keys a caller may override (ddpm.sample's flags, Run.sample's keywords).
SAMPLER_OVERRIDES = (
    "steps", "eta", "order", "variance", "guidance", "guidance_interval", "S_churn", "shift"
)  # fmt: skip
# The run's choices that a switch to another sampler keeps (its steps are the sampler's own).
CARRIED_KEYS = ("clip_denoised", "guidance", "guidance_interval")


def sampler_option(cfg: DictConfig, name: str | None = None, **overrides: Any) -> Option:
    """The run's sampler section, or sampler `name`'s YAML with the run's CARRIED_KEYS, with
    `overrides` (a key of SAMPLER_OVERRIDES each; None leaves a key as it is) applied and
    checked."""
    name = name or cfg.sampler.name
    if name not in SAMPLERS:
        SAMPLERS.get(name)  # lists the valid ones
    keys = section(cfg, "sampler")
    if name != cfg.sampler.name:
        keys = {**default_section("sampler", name), **{k: keys[k] for k in CARRIED_KEYS}}
    for key, value in overrides.items():
        if key not in SAMPLER_OVERRIDES:
            raise ConfigError(f"{key}: not a sampler override; they are: {SAMPLER_OVERRIDES}")
        if value is None:
            continue
        if key not in {**SAMPLERS.shared_keys(), **SAMPLERS.own_keys(name)}:
            raise ConfigError(f"--{key.replace('_', '-')} does not apply to the {name} sampler")
        keys[key] = value
    option = SAMPLERS.resolve(keys)
    if overrides.get("guidance") is not None:
        check_guidance(saved_conditioning(cfg), overrides["guidance"])
    return option


def check_class_request(cfg: DictConfig, classes: Any, per_class: int | None) -> None:
    """Asking for classes needs a class-conditional run."""
    if (classes is not None or per_class) and not is_conditional(saved_conditioning(cfg)):
        raise ConfigError("--class and --per-class need a class-conditional run")


def choose_labels(
    known: list[str],
    n: int,
    classes: str | int | list[str | int] | None = None,
    per_class: int | None = None,
) -> tuple[np.ndarray | None, int]:
    """The labels to draw ([N], None for an unconditional model) and the grid's columns:
    `per_class` of each class in turn (a row each), or `classes` (names or indices) taking
    turns over n, or by default every class in turn (a column each)."""
    if not known:
        return None, 0
    if per_class:
        return per_class_labels(per_class, len(known)), per_class
    if classes is not None:
        queries = classes.split(",") if isinstance(classes, str) else classes
        queries = queries if isinstance(queries, list | tuple) else [queries]
        wanted = [class_index(str(q), known) for q in queries]
        return np.resize(np.array(wanted, np.int32), n), 0
    return balanced_labels(n, len(known)), len(known)
