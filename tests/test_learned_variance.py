"""Learned reverse variances (Improved DDPM), checked against improved-diffusion's formulas
(tests/reference/improved_diffusion.py) on fixed arrays, and end to end on a tiny run."""

import json
import math

import numpy as np
import pytest
from mindspore import Parameter, Tensor, nn, ops

from ddpm.api import load_run, train
from ddpm.config.groups import asks_for_ddpm, resolve
from ddpm.config.registry import ConfigError
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.losses import MSE
from ddpm.diffusion.objectives import PredNoise
from ddpm.diffusion.samplers import LEARNED_COEFS
from ddpm.diffusion.variance import VARIANCES, LearnedRange, log_variance_range
from ddpm.evaluation.bpd import NegativeElbo
from ddpm.sampling.reverse_step import ReverseStep
from ddpm.training.step import HybridLoss
from tests.conftest import TINY, compose_config, make_betas, make_plan
from tests.reference.improved_diffusion import ImprovedDiffusion, normal_kl, respaced_betas

B, C, S = 4, 1, 4  # batch, channels, image side
T = 100


class FixedOutput(nn.Cell):
    """A network whose output [B, 2C, S, S] (eps, then v) is a trainable constant."""

    learns_variance, num_classes = True, 0

    def __init__(self, out: np.ndarray) -> None:
        super().__init__()
        self.out = Parameter(Tensor(out.astype(np.float32)), name="out")

    def construct(self, x, t, y):
        return self.out * 1.0


def _diffusion() -> GaussianDiffusion:
    return GaussianDiffusion(make_betas("cosine", T), PredNoise(), None, LearnedRange(0.001))


@pytest.fixture
def arrays():
    """x_0 on the 8-bit grid, eps, a network output with v partly outside [-1, 1], and t
    covering the decoder (0), the first KL (1) and the noisiest step."""
    rng = np.random.default_rng(0)
    x_start = rng.integers(0, 256, (B, C, S, S)) / 127.5 - 1.0
    noise = rng.standard_normal((B, C, S, S))
    eps_hat = noise + 0.3 * rng.standard_normal((B, C, S, S))
    v = rng.uniform(-1.2, 1.2, (B, C, S, S))
    t = np.array([0, 1, 37, T - 1])
    return x_start, noise, np.concatenate([eps_hat, v], axis=1), t


def _loss_inputs(x_start, t, noise):
    """(x_0, t, eps, y) as the train step feeds its loss."""
    as32 = [Tensor(a.astype(np.float32)) for a in (x_start, noise)]
    return as32[0], Tensor(t.astype(np.int32)), as32[1], Tensor(np.zeros(B, np.int32))


def test_the_learned_range_spans_improved_diffusions_bounds():
    betas = make_betas("cosine", T)
    min_log, max_log = log_variance_range(betas)
    ref = ImprovedDiffusion(betas)
    np.testing.assert_allclose(min_log, ref.posterior_log_variance_clipped, rtol=1e-13)
    np.testing.assert_allclose(max_log, np.log(betas), rtol=1e-13)
    assert np.all(min_log <= max_log)


def test_hybrid_loss_is_improved_diffusions_rescaled_mse_with_learned_range(arrays):
    x_start, noise, out, t = arrays
    loss = HybridLoss(FixedOutput(out), _diffusion(), MSE(), np.ones(T))
    got = loss(*_loss_inputs(x_start, t, noise))
    ref = ImprovedDiffusion(make_betas("cosine", T)).training_losses(out, x_start, t, noise)
    np.testing.assert_allclose(got.asnumpy(), ref["loss"], rtol=2e-4)
    assert np.all(ref["vb"] > 0) and ref["vb"][0] != ref["vb"][1]  # both branches are in it


def test_the_bound_trains_only_the_variance_channels(arrays):
    """The stop-gradient: d loss / d eps_hat is L_simple's alone, and the v channels get
    the bound's gradient."""
    x_start, noise, out, t = arrays
    net = FixedOutput(out)
    loss = HybridLoss(net, _diffusion(), MSE(), np.ones(T))
    inputs = _loss_inputs(x_start, t, noise)
    grad = ops.grad(lambda *a: loss(*a).sum(), None, net.trainable_params())(*inputs)[0]
    grad = grad.asnumpy()
    simple = 2.0 * (out[:, :C] - noise) / (C * S * S)  # d/d eps_hat of mean_flat((eps_hat - eps)^2)
    np.testing.assert_allclose(grad[:, :C], simple, rtol=1e-4, atol=1e-7)
    assert np.all(np.abs(grad[:, C:]).reshape(B, -1).max(axis=1) > 1e-6)


def _ddpm_step(network: nn.Cell, diffusion: GaussianDiffusion, steps: int):
    plan = make_plan(diffusion, "ddpm", steps=steps)  # the learned columns: the network's
    assert plan.learned_sigma
    return ReverseStep(network, diffusion.objective, True, 1.0, diffusion.variance), plan


def _run_row(step, plan, i, x_t, noise, y=None):
    t = Tensor(np.full(len(x_t), plan.timesteps[i], np.int32))
    y = Tensor(np.zeros(len(x_t), np.int32)) if y is None else y
    coefs = Tensor(plan.coefs[i].astype(np.float32))
    x32 = Tensor(x_t.astype(np.float32))
    x_prev, _ = step(x32, t, y, coefs, Tensor(noise.astype(np.float32)), ops.zeros_like(x32))
    return x_prev.asnumpy()


def test_ddpm_sampler_draws_with_the_learned_sigma_of_the_respaced_betas(arrays):
    """One respaced reverse step equals improved-diffusion's p_sample on SpacedDiffusion."""
    _, noise, out, _ = arrays
    d = _diffusion()
    step, plan = _ddpm_step(FixedOutput(out), d, steps=10)
    assert plan.coefs.shape == (10, len(LEARNED_COEFS))
    kept = sorted(int(t) for t in plan.timesteps)
    spaced = ImprovedDiffusion(respaced_betas(d.alphas_cumprod, set(kept)))
    x_t = np.random.default_rng(1).standard_normal((B, C, S, S))
    for i in (0, 4, 9):  # the first, a middle and the noiseless last step
        index = np.full(B, kept.index(int(plan.timesteps[i])))
        want = spaced.p_sample(out, x_t, index, noise)
        np.testing.assert_allclose(_run_row(step, plan, i, x_t, noise), want, rtol=1e-4, atol=1e-5)


def test_ddim_and_dpm_solver_ignore_the_variance_channels(arrays):
    _, noise, out, _ = arrays
    d = _diffusion()
    other_v = np.concatenate([out[:, :C], -out[:, C:]], axis=1)
    x_t = np.random.default_rng(2).standard_normal((B, C, S, S))
    for name in ("ddim", "dpm_solver"):
        plan = make_plan(d, name, steps=10)
        results = []
        for net in (FixedOutput(out), FixedOutput(other_v)):
            results.append(_run_row(ReverseStep(net, d.objective, True), plan, 3, x_t, noise))
        eps_only = FixedOutput(out[:, :C])
        eps_only.learns_variance = False
        results.append(_run_row(ReverseStep(eps_only, d.objective, True), plan, 3, x_t, noise))
        np.testing.assert_array_equal(results[0], results[1])
        np.testing.assert_array_equal(results[0], results[2])


def test_bits_per_dim_uses_the_learned_sigma(arrays):
    """Every timestep's term equals improved-diffusion's _vb_terms_bpd (clipped, as in
    calc_bpd_loop), and the total is prior + their sum."""
    x_start, _, out, _ = arrays
    d = _diffusion()
    ref = ImprovedDiffusion(d.betas)
    elbo = NegativeElbo(x_start.astype(np.float32), d, timesteps=None)
    got = elbo(ReverseStep(FixedOutput(out), d.objective, True), B)
    terms = []
    for t in range(T):
        noise = np.random.default_rng((0, t)).standard_normal(x_start.shape)
        ts = np.full(B, t)
        x_t = ref.q_sample(x_start, ts, noise)
        terms.append(ref.vb_terms_bpd(out, x_start, x_t, ts, clip_denoised=True).mean())
    ab_T = ref.alphas_cumprod[-1]  # _prior_bpd: KL(q(x_T | x_0) || N(0, I))
    prior = np.mean(normal_kl(np.sqrt(ab_T) * x_start, np.log(1 - ab_T), 0.0, 0.0)) / np.log(2)
    np.testing.assert_allclose(got["bpd_decoder"], terms[0], rtol=1e-4)
    np.testing.assert_allclose(got["bpd"], prior + sum(terms), rtol=1e-4)


def test_learned_variance_is_ddpms_alone():
    assert asks_for_ddpm(["variance=learned"])
    with pytest.raises(ConfigError, match="variance=learned.*use variance=fixed"):
        resolve(compose_config("formulation=flow", "variance=learned"))
    with pytest.raises(ConfigError, match="valid options: fixed, learned"):
        VARIANCES.resolve({"name": "learnt"})  # a saved config's section


@pytest.mark.slow
def test_a_learned_variance_run_trains_samples_and_scores_bits(tmp_path):
    run = train(
        [*TINY, "experiment=quick_ddpm", "variance=learned", "sampler=ddpm", "sampler.steps=5",
         "trainer.bpd_n=8", "trainer.bpd_timesteps=5"],
        tmp_path / "run",
    )  # fmt: skip
    assert run.model.network.learns_variance
    assert run.model.network.final_conv.weight.shape[0] == 2 * 4  # 2C channels of 2x2 patches
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert math.isfinite(summary["hparam/bpd"]) and summary["hparam/bpd"] > 0
    loaded = load_run(tmp_path / "run")
    for sampler in ("ddpm", "ddim"):
        images, _ = loaded.sample(n=4, seed=3, sampler=sampler)
        assert images.shape == (4, 28, 28, 1) and images.std() > 0
