"""Sampler tables against closed forms, and the compiled reverse step with oracle networks."""

import numpy as np
import pytest
from mindspore import nn, ops

from ddpm.registry import ConfigError
from ddpm.reverse_step import ReverseStep, p_sample_loop
from ddpm.samplers import sampling_timesteps
from tests.conftest import make_diffusion, make_plan


@pytest.fixture
def diffusion():
    return make_diffusion("cosine", 100)


def test_ddim_eta1_on_all_steps_is_ddpm(diffusion):
    ddpm = make_plan(diffusion, "ddpm")
    ddim = make_plan(diffusion, "ddim", steps=100, eta=1.0)
    np.testing.assert_array_equal(ddim.timesteps, ddpm.timesteps)
    # sigma^2 = posterior variance, and the mean coefficients coincide (eq. 7 vs eq. 12).
    np.testing.assert_allclose(ddim.coefs, ddpm.coefs, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(
        ddim.coefs[:-1, 4] ** 2, diffusion.posterior_variance[ddim.timesteps[:-1]], rtol=1e-7
    )


def test_respaced_ddpm_is_ddim_eta1_on_the_same_steps(diffusion):
    """Over S < T steps DDPM uses the respaced betas 1 - ab_t / ab_prev, whose posterior
    variance is DDIM's sigma at eta = 1: the two tables coincide."""
    ddpm = make_plan(diffusion, "ddpm", steps=20)
    ddim = make_plan(diffusion, "ddim", steps=20, eta=1.0)
    assert len(ddpm.timesteps) == 20
    np.testing.assert_array_equal(ddim.timesteps, ddpm.timesteps)
    np.testing.assert_allclose(ddim.coefs[:-1], ddpm.coefs[:-1], rtol=1e-7, atol=1e-12)


def test_ddim_eta0_is_deterministic(diffusion):
    plan = make_plan(diffusion, "ddim", steps=10, eta=0.0)
    assert np.all(plan.coefs[:, 4] == 0)


def test_ddpm_last_step_is_noise_free_and_returns_x0(diffusion):
    plan = make_plan(diffusion, "ddpm")
    a, b, sigma = plan.coefs[-1, 2:]
    assert plan.timesteps[-1] == 0 and sigma == 0
    assert a == pytest.approx(1.0) and b == pytest.approx(0.0, abs=1e-12)


def test_ddpm_large_variance(diffusion):
    plan = make_plan(diffusion, "ddpm", variance="large")
    t = plan.timesteps[:-1]
    np.testing.assert_allclose(plan.coefs[:-1, 4] ** 2, diffusion.betas[t])


def test_ddim_trailing_spacing():
    t = sampling_timesteps(1000, 50)
    assert t[0] == 999 and len(t) == 50 and np.all(np.diff(t) == -20)
    assert list(sampling_timesteps(10, 10)) == list(range(9, -1, -1))


@pytest.mark.parametrize("bad", [{"steps": 0}, {"steps": 101}, {"eta": -1.0}])
def test_ddim_bad_values(diffusion, bad):
    with pytest.raises(ConfigError):
        make_plan(diffusion, "ddim", **bad)


def test_unknown_sampler_lists_options(diffusion):
    with pytest.raises(ConfigError, match="ddim, ddpm"):
        make_plan(diffusion, "euler")


@pytest.mark.parametrize(
    ("sampler", "params"),
    [("ddpm", {}), ("ddim", {"steps": 10, "eta": 0.0}), ("ddim", {"steps": 25, "eta": 1.0})],
)
def test_sampling_with_oracle_recovers_the_image(sampler, params, oracle_noise):
    """A network that knows the one training image must be sampled back to it exactly."""
    d = make_diffusion("linear", 100, scale_to_T=True)
    target = np.linspace(-0.9, 0.9, 2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    step = ReverseStep(oracle_noise(d, target), d.objective, True)
    x = p_sample_loop(step, make_plan(d, sampler, **params), target.shape, seed=3)
    np.testing.assert_allclose(x, target, atol=2e-4)


def test_sampling_is_seeded(diffusion):
    class Zero(nn.Cell):
        def construct(self, x, t):
            return ops.zeros_like(x)

    step = ReverseStep(Zero(), diffusion.objective, True)
    plan = make_plan(diffusion, "ddpm")
    a, b = (p_sample_loop(step, plan, (2, 1, 4, 4), seed=7) for _ in range(2))
    c = p_sample_loop(step, plan, (2, 1, 4, 4), seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
