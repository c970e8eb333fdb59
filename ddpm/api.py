"""The library's front door: train a config, load a saved run, sample it, evaluate it.

    import ddpm
    run = ddpm.train(["experiment=tiny", "seed=3"])        # a trained Run
    run = ddpm.load_run("outputs/2026-12-02/10-00-00")    # or a saved one
    images, labels = run.sample(16, classes="sneaker", guidance=2.0)
    metrics = run.evaluate(n=1000)

Every command-line tool (ddpm.run, ddpm.sample, ddpm.evaluate, ddpm.guidance) is a shell
over these.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from ddpm.config.groups import (
    CONF_DIR,
    DDPM_RECIPE,
    RunConfig,
    asks_for_ddpm,
    check_overrides,
    resolve,
)
from ddpm.config.registry import Option
from ddpm.config.run_folder import RunFolder, load_config
from ddpm.data.images import to_uint8
from ddpm.diffusion.ode_samplers import ODEPlan
from ddpm.diffusion.samplers import SamplerPlan, describe
from ddpm.evaluation.build import build_evaluator, build_likelihood, likelihood_variance
from ddpm.evaluation.evaluator import Evaluator
from ddpm.runtime import atomic
from ddpm.sampling.loading import SavedModel, latest_checkpoint, load_model
from ddpm.sampling.options import check_class_request, choose_labels, sampler_option
from ddpm.sampling.reverse_step import ReverseStep, p_sample_loop, reverse_process
from ddpm.training.fit import fit_run


@dataclass
class Samples:
    images: np.ndarray  # uint8 [N, H, W, C]
    labels: np.ndarray | None  # [N] class indices of a conditional model, else None
    sampler: Option  # the sampler that drew them
    steps: int  # network evaluations per sample (reverse steps)
    columns: int = 0  # the grid's columns that keep one class per row or column; 0: any

    def __iter__(self):  # images, labels = run.sample(...)
        return iter((self.images, self.labels))


class Run:
    """A saved run: its config, resolved once, and its EMA network, loaded on first use."""

    def __init__(self, path: str | Path, checkpoint: str | Path | None = None) -> None:
        self.path = Path(path)
        self.cfg: DictConfig = load_config(self.path)
        self.config: RunConfig = resolve(self.cfg)
        self._checkpoint = Path(checkpoint) if checkpoint else None
        self._model: SavedModel | None = None
        self._steps: dict[tuple, ReverseStep] = {}  # signature -> the first step built
        self._evaluator: Evaluator | None = None  # loaded once: its network compiles once

    @property
    def model(self) -> SavedModel:
        if self._model is None:
            ckpt = self._checkpoint or latest_checkpoint(self.path)
            self._model = load_model(self.config, ckpt)
        return self._model

    @property
    def classes(self) -> list[str]:
        """A conditional model's class names; [] for an unconditional one."""
        return self.model.classes

    @property
    def step(self) -> int:
        return self.model.step

    @property
    def image_shape(self) -> tuple[int, int, int]:
        keys = self.config["dataset"].shared
        return keys.channels, keys.image_size, keys.image_size

    def sampler(self, name: str | None = None, **overrides: Any) -> Option:
        """The run's sampler, or sampler `name` with its YAML keys, with `overrides`
        (steps, eta, order, guidance, guidance_interval) applied and checked."""
        return sampler_option(self.cfg, name, **overrides)

    def reverse_process(self, sampler: Option) -> tuple[ReverseStep, SamplerPlan | ODEPlan]:
        """The reverse step and plan of `sampler`. The step is that of an earlier call
        wherever it computes the same (ReverseStep.signature), so sampling again at another
        guidance scale, step count or sampler of the same kind compiles no new graph."""
        step, plan = reverse_process(self.model.network, self.model.diffusion, sampler)
        return self._steps.setdefault(step.signature(), step), plan

    def sample(
        self,
        n: int = 64,
        *,
        classes: str | int | list[str | int] | None = None,
        per_class: int | None = None,
        sampler: str | Option | None = None,
        seed: int = 0,
        on_step: Callable[[int, np.ndarray], None] | None = None,
        **overrides: Any,
    ) -> Samples:
        """n samples from the EMA weights (uint8 [N, H, W, C]) and their labels.

        A conditional model draws `classes` (names or indices, taking turns), or
        `per_class` of each class in turn, or by default every class in turn; an
        unconditional one refuses both. `sampler` is a sampler's name (default: the run's)
        or an Option from `Run.sampler`; `overrides` are its keys (steps=10, guidance=2).
        `on_step(i, x_i)` sees every intermediate batch [N, C, H, W] in [-1, 1]."""
        option = sampler if isinstance(sampler, Option) else self.sampler(sampler, **overrides)
        check_class_request(self.cfg, classes, per_class)
        labels, columns = choose_labels(self.classes, n, classes, per_class)
        step, plan = self.reverse_process(option)
        shape = (n if labels is None else len(labels), *self.image_shape)
        x = p_sample_loop(step, plan, shape, seed=seed, on_step=on_step, labels=labels)
        return Samples(to_uint8(x), labels, option, plan.num_steps, columns)

    def evaluate(
        self,
        n: int = 1000,
        *,
        batch: int = 250,
        seed: int = 1000,
        bpd_n: int = 0,
        bpd_timesteps: int | None = 50,
        sampler: str | Option | None = None,
        save: bool = False,
        **overrides: Any,
    ) -> dict[str, Any]:
        """The sample metrics of n samples (FD, FD-inf, IS, precision, recall, the class
        shares; a conditional model draws every class in turn and adds cond_accuracy and
        fd_class) and, with bpd_n > 0, the bits/dim of the first bpd_n test images.
        `save` writes them to the run's metrics.json, as ddpm.evaluate does."""
        option = sampler if isinstance(sampler, Option) else self.sampler(sampler, **overrides)
        dataset, model = self.config["dataset"], self.model
        if n and self._evaluator is None:
            self._evaluator = build_evaluator(n, dataset, conditional=bool(model.classes))
        evaluator = self._evaluator if n else None
        variance = likelihood_variance(self.config["sampler"])
        likelihood = build_likelihood(bpd_n, bpd_timesteps, dataset, model.diffusion, variance)
        step, plan = self.reverse_process(option)
        start, metrics = time.perf_counter(), {}
        if evaluator is not None:
            metrics.update(
                evaluator.score(
                    step, plan, n, self.image_shape, min(batch, n), seed, len(model.classes)
                )
            )
        if likelihood is not None:
            metrics.update(likelihood(step, min(batch, bpd_n)))
        metrics.update(
            step=model.step, sampler=describe(option), seconds=round(time.perf_counter() - start, 1)
        )
        if save:
            atomic.write_text(RunFolder(self.path).evaluation, _json(metrics))
        return metrics


def _json(values: dict[str, Any]) -> str:
    return json.dumps(values, indent=2)


def load_run(path: str | Path, checkpoint: str | Path | None = None) -> Run:
    """A saved run (from `checkpoint`, default its latest); its network loads on first use."""
    return Run(path, checkpoint)


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """conf/ composed with `overrides`, as `python -m ddpm.run <overrides>` composes it."""
    overrides = [*overrides, DDPM_RECIPE] if asks_for_ddpm(list(overrides)) else list(overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def train(overrides: Sequence[str] = (), run_dir: str | Path | None = None) -> Run:
    """Train conf/ composed with `overrides` into `run_dir` (default
    outputs/<date>/<time>, as ddpm.run) and return the trained run."""
    cfg = compose_config(overrides)
    check_overrides(cfg, list(overrides))
    run_dir = Path(run_dir or time.strftime("outputs/%Y-%m-%d/%H-%M-%S"))
    saved = RunFolder(run_dir).config
    if not saved.is_file():  # Hydra's CLI writes it; a resumed run keeps its own
        saved.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(saved, OmegaConf.to_yaml(cfg))
    trained_dir, _ = fit_run(cfg, run_dir)
    return load_run(trained_dir)
