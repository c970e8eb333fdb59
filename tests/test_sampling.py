"""Sampler tables against closed forms, and the compiled reverse step with oracle networks."""

from pathlib import Path

import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ddpm.config.registry import ConfigError
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.objectives import OBJECTIVES
from ddpm.diffusion.samplers import COEFS, sampling_timesteps
from ddpm.sampling.reverse_step import ReverseStep, p_sample_loop
from tests.conftest import make_diffusion, make_plan

# Trajectories from diffusers' DPMSolverMultistepScheduler; see the script beside them.
A, C, SIGMA = (COEFS.index(name) for name in ("a", "c", "sigma"))
DIFFUSERS = Path(__file__).parent / "reference" / "dpm_solver_diffusers.npz"


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
        ddim.coefs[:-1, SIGMA] ** 2, diffusion.posterior_variance[ddim.timesteps[:-1]], rtol=1e-7
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
    assert np.all(plan.coefs[:, SIGMA] == 0)


def test_ddpm_last_step_is_noise_free_and_returns_x0(diffusion):
    plan = make_plan(diffusion, "ddpm")
    a, b, c, sigma = plan.coefs[-1, 2:6]
    assert plan.timesteps[-1] == 0 and sigma == 0
    assert a == pytest.approx(1.0) and b == pytest.approx(0.0, abs=1e-12)


def test_ddpm_large_variance(diffusion):
    plan = make_plan(diffusion, "ddpm", variance="large")
    t = plan.timesteps[:-1]
    np.testing.assert_allclose(plan.coefs[:-1, SIGMA] ** 2, diffusion.betas[t])


def test_ddim_trailing_spacing():
    t = sampling_timesteps(1000, 50)
    assert t[0] == 999 and len(t) == 50 and np.all(np.diff(t) == -20)
    assert list(sampling_timesteps(10, 10)) == list(range(9, -1, -1))


@pytest.mark.parametrize("bad", [{"steps": 0}, {"steps": 101}, {"eta": -1.0}])
def test_ddim_bad_values(diffusion, bad):
    with pytest.raises(ConfigError):
        make_plan(diffusion, "ddim", **bad)


def test_unknown_sampler_lists_options(diffusion):
    with pytest.raises(ConfigError, match="ddim, ddpm, dpm_solver, euler, heun, midpoint"):
        make_plan(diffusion, "rk45")


@pytest.mark.parametrize(
    ("sampler", "params"),
    [
        ("ddpm", {}),
        ("ddim", {"steps": 10, "eta": 0.0}),
        ("ddim", {"steps": 25, "eta": 1.0}),
        ("dpm_solver", {"steps": 10}),
    ],
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
        def construct(self, x, t, y):
            return ops.zeros_like(x)

    step = ReverseStep(Zero(), diffusion.objective, True)
    plan = make_plan(diffusion, "ddpm")
    a, b = (p_sample_loop(step, plan, (2, 1, 4, 4), seed=7) for _ in range(2))
    c = p_sample_loop(step, plan, (2, 1, 4, 4), seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


class TanhDenoiser(nn.Cell):
    """The reference script's x0 network: x0(x, t) = 0.9 tanh(x) + 0.05 sin(t / 100)."""

    def construct(self, x, t, y):
        return 0.9 * ops.tanh(x) + 0.05 * ops.sin(t.astype(x.dtype) / 100)[:, None, None, None]


@pytest.mark.parametrize("case", ["order2_steps10", "order2_steps20", "order1_steps10"])
def test_dpm_solver_follows_diffusers(case):
    """Every step of the compiled step with the dpm_solver table matches diffusers'
    DPMSolverMultistepScheduler (dpmsolver++, trailing, lower_order_final) on the same
    closed-form network and x_T."""
    ref = np.load(DIFFUSERS)
    order, steps = int(case[5]), int(case.split("steps")[1])
    d = GaussianDiffusion(ref["betas"], OBJECTIVES.get("pred_x0")())
    plan = make_plan(d, "dpm_solver", steps=steps, order=order, clip_denoised=False)
    np.testing.assert_array_equal(plan.timesteps, ref[f"{case}_timesteps"])
    step = ReverseStep(TanhDenoiser(), d.objective, False)
    x = Tensor(ref["x_T"].astype(np.float32))
    x0 = ops.zeros_like(x)
    for i, t in enumerate(plan.timesteps):
        coefs = Tensor(plan.coefs[i].astype(np.float32))
        ts, ys = Tensor(np.full(len(x), t, np.int32)), Tensor(np.zeros(len(x), np.int32))
        x, x0 = step(x, ts, ys, coefs, ops.zeros_like(x), x0)
        np.testing.assert_allclose(x.asnumpy(), ref[f"{case}_x"][i], atol=2e-5, err_msg=f"step {i}")


def test_dpm_solver_first_order_is_ddim_eta0(diffusion):
    """DPM-Solver++ of order 1 is DDIM (Lu et al. 2022, sec. 4.1): the same tables."""
    ddim = make_plan(diffusion, "ddim", steps=12, eta=0.0)
    dpm = make_plan(diffusion, "dpm_solver", steps=12, order=1)
    np.testing.assert_allclose(dpm.coefs, ddim.coefs, rtol=1e-9, atol=1e-12)


def test_dpm_solver_second_order_weights_sum_to_the_first_order_one(diffusion):
    """D = (1 + 1/2r) x0 - 1/2r x0_prev: a + c equals the first-order weight, with c < 0
    on every step but the first and the last."""
    first = make_plan(diffusion, "dpm_solver", steps=12, order=1).coefs
    second = make_plan(diffusion, "dpm_solver", steps=12, order=2).coefs
    np.testing.assert_allclose(second[:, A] + second[:, C], first[:, A], rtol=1e-12)
    assert second[0, C] == 0 and second[-1, C] == 0 and np.all(second[1:-1, C] < 0)


def test_sampler_overrides_reach_shared_and_own_keys():
    """steps is a key every sampler shares; eta belongs to DDIM alone."""
    from ddpm.sampling.options import sampler_option
    from tests.conftest import compose_config

    cfg = compose_config("conditioning=none")
    option = sampler_option(cfg, "ddpm", steps=10, eta=None)
    assert option.name == "ddpm" and option.shared.steps == 10
    option = sampler_option(cfg, "dpm_solver", steps=10, order=1)
    assert option.shared.steps == 10 and option.params["order"] == 1
    with pytest.raises(ConfigError, match="--eta does not apply to the ddpm sampler"):
        sampler_option(cfg, "ddpm", eta=1.0)
    with pytest.raises(ConfigError, match="guidance 2.0 needs a class-conditional model"):
        sampler_option(cfg, "ddim", guidance=2.0)
    with pytest.raises(ConfigError, match="not a sampler override"):
        sampler_option(cfg, "ddim", clip=False)
    conditional = compose_config("conditioning=class")
    assert sampler_option(conditional, "ddim", guidance=2.0).shared.guidance == 2.0


def test_switching_sampler_keeps_the_runs_guidance_but_not_its_steps():
    """A guided run sampled with another sampler stays guided over the same interval."""
    from ddpm.sampling.options import sampler_option
    from tests.conftest import compose_config

    cfg = compose_config(
        "formulation=flow",
        "sampler=euler",
        "sampler.guidance=3.0",
        "sampler.guidance_interval=[0.2,0.8]",
        "sampler.steps=7",
    )
    option = sampler_option(cfg, "heun")
    assert option.name == "heun" and option.shared.guidance == 3.0
    assert list(option.shared.guidance_interval) == [0.2, 0.8]
    assert option.shared.steps == 18  # heun.yaml's own
    assert sampler_option(cfg, "heun", guidance=1.5).shared.guidance == 1.5


@pytest.mark.xdist_group("flow_run")  # tests.conftest.flow_run
def test_a_run_samples_other_scales_and_step_counts_on_its_compiled_graphs(
    flow_run, feature_cache, monkeypatch, graph_mode
):
    """ddpm.guidance evaluates one run at several w: after the first scale nothing
    compiles, and every draw is the one a freshly loaded run makes."""
    from ddpm.api import load_run

    monkeypatch.setenv("DDPM_CACHE", str(feature_cache))
    flow_run.evaluate(10, batch=10, guidance=2.0)
    features = flow_run._evaluator.space.net
    compiled_features = set(features.compile_cache)
    assert compiled_features
    first, _ = flow_run.reverse_process(flow_run.sampler(guidance=2.0))
    flow_run.sample(6, seed=1, guidance=2.0)
    graphs = first.parts()
    compiled = [set(cell.compile_cache) for cell in (graphs.network, graphs.update)]
    assert all(compiled)
    again = flow_run.sample(6, seed=1, guidance=4.0, steps=4)
    assert flow_run.reverse_process(flow_run.sampler(guidance=4.0, steps=4))[0] is first
    assert [set(cell.compile_cache) for cell in (graphs.network, graphs.update)] == compiled
    flow_run.evaluate(10, batch=10, guidance=4.0)
    assert flow_run._evaluator.space.net is features
    assert set(features.compile_cache) == compiled_features
    fresh = load_run(flow_run.path).sample(6, seed=1, guidance=4.0, steps=4)
    np.testing.assert_array_equal(again.images, fresh.images)
    # w = 1 everywhere needs one network call a row: another graph, so another step.
    plain, _ = flow_run.reverse_process(flow_run.sampler(guidance=1.0))
    assert plain is not first and not plain.guided
