"""Train one configuration: `python -m ddpm.run schedule=cosine block=resnet`.

Hydra composes conf/; this entry point seeds, builds the run from the config, and fits.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import mindspore as ms
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ddpm.build import build_trainer
from ddpm.data import DatasetError
from ddpm.registry import ConfigError

log = logging.getLogger("ddpm")

# alpha_bar_T above this leaves visible signal where sampling starts from pure noise.
TERMINAL_ALPHA_BAR_WARN = 1e-3


def setup_runtime(seed: int, mode: str, device: str) -> None:
    ms.set_device(device)
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    ms.set_seed(seed)


def report_schedule(alpha_bar_T: float, name: str, timesteps: int) -> None:
    snr = alpha_bar_T / max(1.0 - alpha_bar_T, 1e-300)
    log.info(
        "schedule %s, T=%d: alpha_bar_T = %.3g (terminal SNR %.3g, %.1f%% of the image "
        "amplitude survives)",
        name,
        timesteps,
        alpha_bar_T,
        snr,
        100 * alpha_bar_T**0.5,
    )
    if alpha_bar_T > TERMINAL_ALPHA_BAR_WARN:
        log.warning(
            "alpha_bar_T = %.3g is far from 0: training never sees pure noise, yet "
            "sampling starts from it. Fixes: schedule.scale_to_T=true (ends x 1000/T), "
            "schedule.zero_terminal_snr=true (with objective=pred_v), or a larger "
            "schedule.timesteps.",
            alpha_bar_T,
        )


def train(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    setup_runtime(int(cfg.seed), cfg.runtime.mode, cfg.runtime.device)
    trainer = build_trainer(cfg, run_dir)
    parts = trainer.parts
    log.info("run dir: %s", run_dir)
    log.info(
        "model: %s U-Net, %s blocks, %s attention, %.2fM parameters",
        cfg.model.name,
        cfg.block.name,
        cfg.attention.name,
        sum(p.size for p in parts.train_step.loss_fn.network.trainable_params()) / 1e6,
    )
    report_schedule(parts.diffusion.terminal_alpha_bar(), cfg.schedule.name, cfg.schedule.timesteps)
    log.info(
        "data: %s, %d images of %s; %d steps of batch %d",
        cfg.dataset.name,
        len(parts.data.images),
        parts.data.shape,
        trainer.cfg.steps,
        trainer.cfg.batch_size,
    )
    metrics = trainer.fit()
    log.info("done: %s; samples in %s", metrics, run_dir / "samples.png")
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        metrics = train(cfg, run_dir)
    except (ConfigError, DatasetError) as err:
        log.error("%s", err)  # into the run's log file
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return metrics["hparam/final_loss"]


if __name__ == "__main__":
    main()
