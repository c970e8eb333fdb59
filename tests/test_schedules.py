import math

import numpy as np
import pytest

from ddpm.config.registry import ConfigError
from ddpm.diffusion.schedules import SCHEDULES
from tests.conftest import make_betas


def alpha_bar(betas):
    return np.cumprod(1.0 - betas)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("linear", 0.132), ("quadratic", 0.236), ("sigmoid", 0.132)],
)
def test_terminal_alpha_bar_at_T200(name, expected):
    # FACTS.md: the seed's schedules at T=200 never reach pure noise.
    assert alpha_bar(make_betas(name, 200))[-1] == pytest.approx(expected, abs=1e-3)


def test_cosine_reaches_noise_and_matches_closed_form():
    T, s = 200, 0.008
    ab = alpha_bar(make_betas("cosine", T))
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    expected = np.array([f(t) / f(0) for t in range(1, T + 1)])
    # Betas are clipped at 0.999, which only touches the very last step.
    np.testing.assert_allclose(ab[:-1], expected[:-1], rtol=1e-10)
    assert ab[-1] < 1e-6


def test_linear_at_T1000_is_nearly_noise():
    assert alpha_bar(make_betas("linear", 1000))[-1] == pytest.approx(4.0e-5, rel=0.05)


def test_quadratic_squares_the_ends_once():
    betas = make_betas("quadratic", 200)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)


def test_sigmoid_is_the_annotated_diffusion_variant():
    betas = make_betas("sigmoid", 100)
    x = np.linspace(-6, 6, 100)
    np.testing.assert_allclose(betas, 1 / (1 + np.exp(-x)) * (0.02 - 1e-4) + 1e-4)


def test_scale_to_T_scales_the_ends():
    betas = make_betas("linear", 200, scale_to_T=True)
    assert betas[0] == pytest.approx(5e-4) and betas[-1] == pytest.approx(0.1)
    assert alpha_bar(betas)[-1] < 1e-4


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_zero_terminal_snr_rescale(name):
    plain = make_betas(name, 200)
    fixed = make_betas(name, 200, zero_terminal_snr=True)
    ab = alpha_bar(fixed)
    assert ab[-1] == 0.0
    assert ab[0] == pytest.approx(alpha_bar(plain)[0])  # Lin et al.: first step kept
    assert np.all(np.diff(ab) < 0)


def test_betas_are_float64_and_valid():
    for name in SCHEDULES.names():
        betas = make_betas(name, 50)
        assert betas.dtype == np.float64 and np.all((betas > 0) & (betas <= 1))


@pytest.mark.parametrize("bad", [-5, 0, 1])
def test_bad_timesteps_fail(bad):
    with pytest.raises(ConfigError, match="timesteps"):
        make_betas("linear", bad)


def test_unknown_schedule_lists_options():
    with pytest.raises(ConfigError, match="cosine, linear, quadratic, sigmoid"):
        make_betas("exponential", 10)


def test_scale_to_T_rejects_cosine():
    with pytest.raises(ConfigError, match="scale_to_T"):
        make_betas("cosine", 10, scale_to_T=True)
