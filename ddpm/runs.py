"""A run folder's saved config, as the tools and the library read it back."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ddpm.errors import ConfigError

RUN_CONFIG = Path(".hydra") / "config.yaml"
# Keys added since a run may have been saved, with the values that reproduce older runs.
ADDED_KEYS = {
    "conditioning": {"name": "none"},
    "sampler.guidance": 1.0,
    "sampler.guidance_interval": [0.0, 1.0],
    "model.patch_size": 1,
}


def load_config(run: Path) -> DictConfig:
    """A run's saved config; an unreadable one is a ConfigError that names the file."""
    path = run / RUN_CONFIG
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # a YAML parse error, a file that cannot be read
        reason = " ".join(str(err).split())
        raise ConfigError(f"{path} is not a readable run config: {reason}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} is not a run config (not a mapping)")
    for key, value in ADDED_KEYS.items():
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        if isinstance(node, DictConfig) and leaf not in node:
            node[leaf] = value
    return cfg
