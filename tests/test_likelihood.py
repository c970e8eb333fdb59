"""The bits/dim bound: closed forms, its timestep subset, and oracle networks."""

import math

import numpy as np
import pytest
from mindspore import nn, ops

from ddpm.config.registry import ConfigError
from ddpm.diffusion.likelihood import (
    discretized_gaussian_log_likelihood,
    model_log_variance,
    normal_kl,
    prior_bpd,
    sum_over_timesteps,
    timestep_subset,
)
from ddpm.evaluation.bpd import NegativeElbo
from ddpm.sampling.reverse_step import ReverseStep
from tests.conftest import make_diffusion

GRID = np.arange(256) / 127.5 - 1.0  # the 8-bit values in [-1, 1]


@pytest.mark.parametrize(("mean", "log_scale"), [(0.0, -3.0), (0.7, -1.0), (-1.2, 0.5)])
def test_discretized_gaussian_is_a_distribution_over_256_bins(mean, log_scale):
    p = np.exp(discretized_gaussian_log_likelihood(GRID, mean, log_scale))
    assert p.sum() == pytest.approx(1.0, abs=1e-3)  # the tanh CDF is accurate to ~1e-4
    std = np.exp(log_scale)
    tail = 0.5 * math.erfc((1.0 - 1.0 / 255.0 - mean) / (std * math.sqrt(2.0)))
    assert p[-1] == pytest.approx(tail, abs=1e-3)  # the top bin holds the whole upper tail


def test_normal_kl_closed_forms():
    assert normal_kl(0.3, -1.0, 0.3, -1.0) == pytest.approx(0.0)
    assert normal_kl(1.0, 0.0, 0.0, 0.0) == pytest.approx(0.5)  # mean shift of one std
    assert normal_kl(0.0, np.log(4.0), 0.0, 0.0) == pytest.approx(0.5 * (3 - np.log(4.0)))


def test_prior_term_vanishes_only_with_a_noisy_end():
    x = np.full((2, 1, 4, 4), 0.8)
    full_noise = make_diffusion("cosine", 1000)
    barely = make_diffusion("linear", 10, scale_to_T=False)
    assert prior_bpd(full_noise, x).max() < 1e-4
    assert prior_bpd(barely, x).min() > 0.1


def test_timestep_subset_and_its_interpolated_sum():
    ts = timestep_subset(1000, 50)
    assert len(ts) == 50 and list(ts[:2]) == [0, 1] and ts[-1] == 999 and (np.diff(ts) > 0).all()
    np.testing.assert_array_equal(timestep_subset(100, None), np.arange(100))
    with pytest.raises(ConfigError, match="k >= 3"):
        timestep_subset(100, 2)
    t = np.arange(1000)
    terms = np.where(t == 0, 2.0, 0.5 / np.maximum(t, 1) ** 1.5)  # L_0, then a power law in t
    assert sum_over_timesteps(t, terms, 1000) == pytest.approx(terms.sum())
    assert sum_over_timesteps(ts, terms[ts], 1000) == pytest.approx(terms.sum(), rel=1e-9)


def test_variance_choice_is_checked_and_floored():
    d = make_diffusion("linear", 100, scale_to_T=True)
    small, large = model_log_variance(d, "small"), model_log_variance(d, "large")
    assert np.isfinite(small).all() and small[0] == small[1] == large[0]
    assert (large[1:] >= small[1:]).all()  # beta_t >= beta~_t
    with pytest.raises(ConfigError, match="large, small"):
        model_log_variance(d, "learned")


class ZeroNoise(nn.Cell):
    """Predicts eps = 0: x_0 = x_t / sqrt(ab_t), a poor but valid model."""

    def construct(self, x, t, y):
        return ops.zeros_like(x)


@pytest.fixture
def setup():
    d = make_diffusion("linear", 100, scale_to_T=True)
    levels = np.random.default_rng(0).integers(0, 256, (1, 1, 4, 4))
    images = np.repeat(GRID[levels], 6, axis=0).astype(np.float32)  # one image, 6 copies
    return d, images


def test_oracle_network_pays_only_the_decoder_bin(setup, oracle_noise):
    """Knowing x_0 exactly: every KL term vanishes with beta~, and L_0 is the probability
    that N(x_0, beta~_2) falls in x_0's own bin, 2 Phi(h / s) - 1 with h = 1/255."""
    d, images = setup
    step = ReverseStep(oracle_noise(d, images[:1]), d.objective, True)
    small = NegativeElbo(images, d, timesteps=None, variance="small")(step, batch=4)
    assert max(small["bpd_terms"][1:]) < 1e-4
    assert small["bpd"] == pytest.approx(small["bpd_prior"] + small["bpd_decoder"], abs=1e-4)
    s = math.sqrt(d.posterior_variance[1])
    inner = -math.log2(math.erf(1.0 / 255.0 / s / math.sqrt(2.0)))  # interior pixels
    edge = -math.log2(0.5 * (1.0 + math.erf(1.0 / 255.0 / s / math.sqrt(2.0))))  # +-1 pixels
    on_edge = np.isclose(np.abs(images[0]), 1.0).mean()
    expected = (1 - on_edge) * inner + on_edge * edge
    assert small["bpd_decoder"] == pytest.approx(expected, rel=1e-3)
    large = NegativeElbo(images, d, timesteps=None, variance="large")(step, batch=4)
    assert small["bpd"] < large["bpd"]  # the variance mismatch beta_t vs beta~_t costs bits


def test_bpd_ranks_a_worse_network_and_the_subset_tracks_the_full_sum(setup, oracle_noise):
    d, images = setup
    oracle = ReverseStep(oracle_noise(d, images[:1]), d.objective, True)
    zero = ReverseStep(ZeroNoise(), d.objective, True)
    full = NegativeElbo(images, d, timesteps=None)(zero, batch=4)
    subset = NegativeElbo(images, d, timesteps=20)(zero, batch=4)
    assert full["bpd"] > 1.0 + NegativeElbo(images, d, timesteps=None)(oracle, batch=4)["bpd"]
    assert subset["bpd"] == pytest.approx(full["bpd"], rel=0.06)  # 20 of 100 timesteps
    assert len(subset["bpd_terms"]) == 20
