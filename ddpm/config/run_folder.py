"""A run folder's layout, declared once, and its saved config as the library reads it back.

<run>/.hydra/config.yaml    the resolved config (Hydra writes it)
<run>/checkpoints/          step_XXXXXXXX.ckpt and `latest`
<run>/samples/              step_XXXXXXXX.png, every grid drawn in training
<run>/samples.png           the final grid
<run>/summary.json          the final metrics and wall time
<run>/budget.json           how trainer.minutes fixed the step count
<run>/metrics.json          what ddpm.evaluate measured
<run>/ranks/rank_<r>.json   per-worker weight digests under data parallelism
<run>/FAILED                a failed sweep job's reason
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ddpm.config.errors import ConfigError

RUN_CONFIG = Path(".hydra") / "config.yaml"
CHECKPOINTS = "checkpoints"
CHECKPOINT_GLOB = "step_*.ckpt"
LATEST = "latest"
SAMPLES = "samples"
FINAL_SAMPLES = "samples.png"
SUMMARY = "summary.json"
BUDGET = "budget.json"
EVALUATION = "metrics.json"
RANKS = "ranks"
FAILED = "FAILED"

# Keys added since a run may have been saved, with the values that reproduce older runs.
ADDED_KEYS = {
    "conditioning": {"name": "none"},
    "formulation": {"name": "ddpm"},
    "variance": {"name": "fixed"},
    "sampler.guidance": 1.0,
    "sampler.guidance_interval": [0.0, 1.0],
    "model.patch_size": 1,
    "runtime.threads": None,
    "runtime.jit_level": None,
    "runtime.conv_precision": "float32",
    "runtime.kernel_spin": None,
    "runtime.kernel_pause": None,
    "runtime.kernel_pool": "openmp",
    "trainer.accumulate": 1,
    "trainer.posthoc_ema": [],
    "trainer.posthoc_every": 500,
    "trainer.posthoc_max_mb": 2000.0,
}


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run's files."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / RUN_CONFIG

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def posthoc(self) -> Path:
        """Post-hoc EMA snapshots and the reconstructions made from them (ddpm.ema)."""
        return self.root / "posthoc"

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES

    def grid(self, step: int) -> Path:
        return self.samples / f"step_{step:08d}.png"

    @property
    def final_samples(self) -> Path:
        return self.root / FINAL_SAMPLES

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def budget(self) -> Path:
        return self.root / BUDGET

    @property
    def evaluation(self) -> Path:
        return self.root / EVALUATION

    def rank(self, rank: int) -> Path:
        return self.root / RANKS / f"rank_{rank}.json"

    @property
    def failed(self) -> Path:
        return self.root / FAILED


def load_config(run: Path) -> DictConfig:
    """A run's saved config; an unreadable one is a ConfigError that names the file."""
    path = RunFolder(run).config
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
