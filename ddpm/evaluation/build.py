"""The evaluators of a run: sample quality in the feature space, and bits/dim."""

from __future__ import annotations

from ddpm.config.errors import ConfigError
from ddpm.config.registry import Option
from ddpm.data.build import build_data
from ddpm.data.sources import load_labels
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.evaluation.bpd import NegativeElbo
from ddpm.evaluation.evaluator import Evaluator
from ddpm.evaluation.feature_net import load as load_feature_space
from ddpm.evaluation.feature_net import to_model_space


def build_evaluator(eval_n: int, dataset: Option, conditional: bool = False) -> Evaluator | None:
    """The sample-quality evaluator when eval_n > 0 (needs a fitted feature network); for a
    conditional model it also knows the test labels, for per-class FD."""
    if not eval_n:
        return None
    keys = dataset.shared
    space = load_feature_space(dataset.name, keys.channels, keys.image_size)
    test_labels = load_labels(dataset.name, split="test", **dataset.params) if conditional else None
    return Evaluator(space, test_labels=test_labels)


def likelihood_variance(sampler: Option) -> str:
    """The reverse variance the bound assumes: the DDPM sampler's, else beta_t ("large")."""
    return sampler.params.get("variance", "large")


def build_likelihood(
    bpd_n: int, bpd_timesteps: int | None, dataset: Option, diffusion: GaussianDiffusion,
    variance: str,
) -> NegativeElbo | None:  # fmt: skip
    """The test-set bits/dim bound on the first bpd_n test images, when > 0."""
    if not bpd_n:
        return None
    if diffusion.formulation is not None:
        raise ConfigError(
            f"bits/dim is DDPM's variational bound; formulation={diffusion.formulation.name} "
            "defines none, so this run reports no bits/dim"
        )
    test = build_data(dataset, split="test").images[:bpd_n]
    return NegativeElbo(to_model_space(test), diffusion, bpd_timesteps, variance)
