"""Class conditioning with classifier-free guidance (Ho & Salimans 2022).

`conditioning=class` gives the network a learned embedding of the label y, added to its
time embedding. The embedding has K + 1 rows: the K classes and a null class (index K).
During training each label is replaced by the null class with probability p_uncond, so one
network learns both eps(x_t, y) and eps(x_t). At sampling time, a guidance scale w combines
the two predictions of one batched network call (Ho & Salimans 2022, eq. 6, with w = 1 + theirs):

    out = out(x_t, null) + w * (out(x_t, y) - out(x_t, null)).

w = 0 samples unconditionally, w = 1 purely conditionally, and w > 1 guides harder. The
combination is linear in the network output, so it is the same for every objective (eps,
x0 or v) and happens before the x0 prediction and its clipping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

import numpy as np

from ddpm.config.registry import ConfigError, Option, Registry
from ddpm.config.schema import Range

CONDITIONINGS = Registry("conditioning")


@dataclass(frozen=True)
class ClassConditioning:
    p_uncond: float  # probability that a training label becomes the null class


@CONDITIONINGS.register("none")
def unconditional() -> None:
    """An unconditional model: no labels, the network ignores y."""
    return None


@CONDITIONINGS.register("class")
def class_conditional(*, p_uncond: Annotated[float, Range(ge=0, lt=1)]) -> ClassConditioning:
    """A class-conditional model trained with label dropout p_uncond."""
    return ClassConditioning(p_uncond)


def is_conditional(conditioning: Option) -> bool:
    return conditioning.name != "none"


def check_guidance(conditioning: Option, guidance: float) -> None:
    """Asking for guidance other than 1 needs a conditional model, which has a y to guide
    by; an unconditional model ignores the sampler's `guidance` key."""
    if guidance != 1.0 and not is_conditional(conditioning):
        raise ConfigError(
            f"guidance {guidance} needs a class-conditional model (conditioning=class); "
            "this run is unconditional"
        )


def drop_labels(
    labels: np.ndarray, p_uncond: float, null_class: int, rng: np.random.Generator
) -> np.ndarray:
    """Each label replaced by the null class with probability p_uncond (one draw per label)."""
    dropped = rng.random(len(labels)) < p_uncond
    return np.where(dropped, null_class, labels).astype(np.int32)


def balanced_labels(n: int, num_classes: int) -> np.ndarray:
    """0, 1, ..., K-1, 0, 1, ...: n labels, every class as often as n allows."""
    return (np.arange(n) % num_classes).astype(np.int32)


def per_class_labels(per_class: int, num_classes: int) -> np.ndarray:
    """per_class copies of each class in turn: a grid with one row per class."""
    return np.repeat(np.arange(num_classes), per_class).astype(np.int32)


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def class_index(query: str, classes: list[str]) -> int:
    """The index of a class given by index, by name, or by one '/'-separated part of its
    name, ignoring case and punctuation ('sneaker', 'Ankle boot', 'ankle_boot', 't-shirt')."""
    if query.strip().isdigit():
        index = int(query)
        if index < len(classes):
            return index
    else:
        wanted = _normal(query)
        for i, name in enumerate(classes):
            if wanted in (_normal(name), *(_normal(part) for part in name.split("/"))):
                return i
    listing = ", ".join(f"{i} {name!r}" for i, name in enumerate(classes))
    raise ConfigError(f"no class {query!r}; the model's classes are: {listing}")
