import numpy as np
import pytest

from ddpm.config.registry import ConfigError
from ddpm.diffusion.gaussian import q_sample, velocity
from ddpm.diffusion.objectives import OBJECTIVES
from tests.conftest import make_diffusion


@pytest.fixture
def diffusion():
    return make_diffusion("linear", 200)


def test_q_sample_moments(diffusion):
    rng = np.random.default_rng(0)
    x0 = np.full((200_000,), 0.7)
    t = 120
    x_t = q_sample(
        x0,
        rng.standard_normal(x0.shape),
        diffusion.sqrt_alphas_cumprod[t],
        diffusion.sqrt_one_minus_alphas_cumprod[t],
    )
    ab = diffusion.alphas_cumprod[t]
    assert x_t.mean() == pytest.approx(np.sqrt(ab) * 0.7, abs=5e-3)
    assert x_t.var() == pytest.approx(1 - ab, rel=1e-2)


def test_q_sample_equals_t_single_steps(diffusion):
    """Composing q(x_t | x_{t-1}) t times gives the closed-form marginal's variance."""
    mean, var = 1.0, 0.0
    for beta in diffusion.betas[:50]:
        mean, var = np.sqrt(1 - beta) * mean, (1 - beta) * var + beta
    ab = diffusion.alphas_cumprod[49]
    assert mean == pytest.approx(np.sqrt(ab)) and var == pytest.approx(1 - ab)


def test_posterior_matches_bayes_rule(diffusion):
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0): product of two Gaussians."""
    t, x0, xt = 80, 0.3, -0.4
    beta, ab_prev = diffusion.betas[t], diffusion.alphas_cumprod[t - 1]
    # As a function of x_{t-1}: N(xt; sqrt(1-beta) y, beta) and N(y; sqrt(ab_prev) x0, 1-ab_prev)
    precision = (1 - beta) / beta + 1 / (1 - ab_prev)
    mean = (np.sqrt(1 - beta) * xt / beta + np.sqrt(ab_prev) * x0 / (1 - ab_prev)) / precision
    got_mean, got_var = diffusion.q_posterior(np.array(x0), np.array(xt), t)
    assert got_mean == pytest.approx(mean) and got_var == pytest.approx(1 / precision)


@pytest.mark.parametrize("objective", ["pred_noise", "pred_x0", "pred_v"])
def test_predict_x0_inverts_the_target(objective):
    rng = np.random.default_rng(1)
    d = make_diffusion("cosine", 100, objective)
    x0, noise = rng.uniform(-1, 1, (4, 8)), rng.standard_normal((4, 8))
    a, s = d.sqrt_alphas_cumprod[37], d.sqrt_one_minus_alphas_cumprod[37]
    x_t = q_sample(x0, noise, a, s)
    target = d.objective.target(x0, noise, a, s)
    np.testing.assert_allclose(d.objective.predict_x0(target, x_t, a, s), x0, atol=1e-10)


def test_v_round_trip():
    rng = np.random.default_rng(2)
    x0, eps = rng.standard_normal(10), rng.standard_normal(10)
    a = 0.6
    s = np.sqrt(1 - a**2)
    v = velocity(x0, eps, a, s)
    x_t = q_sample(x0, eps, a, s)
    np.testing.assert_allclose(a * x_t - s * v, x0)  # x_0 from v
    np.testing.assert_allclose(s * x_t + a * v, eps)  # eps from v


def test_zero_terminal_snr_rejects_pred_noise():
    with pytest.raises(ConfigError, match="pred_v"):
        make_diffusion("linear", 50, "pred_noise", zero_terminal_snr=True)
    make_diffusion("linear", 50, "pred_v", zero_terminal_snr=True)


def test_unknown_objective():
    with pytest.raises(ConfigError, match="pred_noise, pred_v, pred_x0"):
        OBJECTIVES.resolve({"name": "pred_eps"})
