"""A dataset option's training images, labels and class names."""

from __future__ import annotations

from ddpm.config.errors import ConfigError
from ddpm.config.registry import Option
from ddpm.data.pipeline import ImageData
from ddpm.data.sources import class_names, load_images, load_labels
from ddpm.diffusion.conditioning import is_conditional


def dataset_classes(dataset: Option, conditioning: Option) -> list[str] | None:
    """The class names a conditional model learns (the dataset's); None when unconditional."""
    if not is_conditional(conditioning):
        return None
    return class_names(dataset.name, dataset.params.get("root"))


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
