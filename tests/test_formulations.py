"""EDM and flow matching: the preconditioning against the paper's Table 1, and every ODE
sampler against the exact answer on Gaussian data, whose denoiser is known in closed form."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from ddpm.config.errors import ConfigError
from ddpm.config.groups import check_overrides, resolve
from ddpm.diffusion.formulations import FORMULATIONS
from ddpm.diffusion.ode_samplers import (
    Churn,
    edm_levels,
    flow_levels,
    make_ode_plan,
    ode_plan,
    sample_numpy,
)
from ddpm.evaluation.build import build_likelihood
from ddpm.sampling.reverse_step import ODEStep, p_sample_loop
from ddpm.training.step import PreconditionedLoss
from tests.conftest import compose_config, denoiser_of, trainer_of
from tests.test_cli import CLI_TINY, cli, events

MU, S = 0.3, 0.5  # the data: x_0 ~ N(MU, S^2) in every pixel


# The papers' settings: Karras et al. 2022, Table 1 and sec. 5; Esser et al. 2024, sec. 3.1.
PAPER_KEYS = {
    "edm": {
        "noise_label_scale": 250.0,
        "sigma_data": 0.5,
        "P_mean": -1.2,
        "P_std": 1.2,
        "sigma_min": 0.002,
        "sigma_max": 80.0,
        "rho": 7.0,
    },
    "flow": {
        "noise_label_scale": 1000.0,
        "t_distribution": "logit_normal",
        "logit_mean": 0.0,
        "logit_std": 1.0,
        "t_min": 0.0,
    },
}


def formulation(name: str, **keys):
    return FORMULATIONS.resolve({"name": name, **PAPER_KEYS[name], **keys})()


def edm_oracle(x, sigma):
    """E[x_0 | x_0 + sigma eps = x] for Gaussian x_0."""
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def flow_oracle(x, t):
    """E[x_0 | (1 - t) x_0 + t eps = x] for Gaussian x_0."""
    var = (1 - t) ** 2 * S**2 + t**2
    return MU + (1 - t) * S**2 / var * (x - (1 - t) * MU)


def test_edm_preconditioning_is_table_1():
    edm = formulation("edm", sigma_data=0.5, noise_label_scale=1.0)
    sigma = np.array([0.002, 0.5, 1.0, 80.0])
    c_in, c_noise, c_skip, c_out = edm.precondition(sigma)
    np.testing.assert_allclose(c_skip, 0.25 / (sigma**2 + 0.25))
    np.testing.assert_allclose(c_out, 0.5 * sigma / np.sqrt(sigma**2 + 0.25))
    np.testing.assert_allclose(c_in, 1 / np.sqrt(sigma**2 + 0.25))
    np.testing.assert_allclose(c_noise, np.log(sigma) / 4)
    # At sigma = 1: c_skip 0.2, c_out 0.4472, c_in 0.8944, lambda 5, lambda c_out^2 = 1.
    np.testing.assert_allclose(
        [c_skip[2], c_out[2], c_in[2], edm.lam(sigma)[2]], [0.2, 0.44721, 0.89443, 5.0], 1e-4
    )
    np.testing.assert_allclose(edm.loss_weight(sigma), 1.0)
    # D = c_skip x + c_out F is exact for F = F* = (x_0 - c_skip x) / c_out.
    x, x0 = np.array([0.7, -1.2, 3.0, 40.0]), np.array([0.1, -0.4, 0.9, 0.2])
    np.testing.assert_allclose(edm.denoise(x, sigma, (x0 - c_skip * x) / c_out), x0)


def test_training_levels_follow_their_distributions():
    rng = np.random.default_rng(0)
    edm = formulation("edm")
    log_sigma = np.log(edm.sample_levels(rng, 200_000))
    assert abs(log_sigma.mean() - edm.P_mean) < 0.01 and abs(log_sigma.std() - edm.P_std) < 0.01
    flow = formulation("flow", t_distribution="logit_normal", logit_mean=0.0, logit_std=1.0)
    t = flow.sample_levels(rng, 200_000)
    u = np.log(t / (1 - t))
    assert abs(u.mean()) < 0.01 and abs(u.std() - 1.0) < 0.01
    uniform = formulation("flow", t_distribution="uniform").sample_levels(rng, 200_000)
    assert uniform.min() > 0 and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.01
    # The flow target is the velocity eps - x_0, with weight 1.
    x0, eps, s = rng.standard_normal(5), rng.standard_normal(5), rng.uniform(0, 1, 5)
    _, _, _, _, p, q, weight = flow.levels_table(s).T.astype(np.float64)
    np.testing.assert_array_equal(p * x0 + q * eps, eps - x0)
    np.testing.assert_allclose(weight, 1.0)
    # EDM's target is (x_0 - c_skip x) / c_out, written in x_0 and eps.
    sigma = edm.sample_levels(rng, 5)
    alpha, sig, _, _, p, q, _ = edm.levels_table(sigma).T.astype(np.float64)
    _, _, c_skip, c_out = edm.precondition(sigma)
    x = alpha * x0 + sig * eps
    np.testing.assert_allclose(p * x0 + q * eps, (x0 - c_skip * x) / c_out, rtol=1e-5)


def test_edm_levels_are_eq_5():
    levels = edm_levels(18, 0.002, 80.0, 7.0)
    assert levels[0] == pytest.approx(80.0) and levels[-2] == pytest.approx(0.002)
    assert levels[-1] == 0.0 and np.all(np.diff(levels) < 0)
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert levels[i] == pytest.approx(expected)
    shifted = flow_levels(10, shift=3.0)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0 and np.all(np.diff(shifted) < 0)
    assert shifted[5] == pytest.approx(3 * 0.5 / (1 + 2 * 0.5))  # t = 0.5 -> 0.75


def exact_error(name: str, method: str, steps: int) -> float:
    """Max error of the deterministic sampler against the exact ODE solution."""
    if name == "edm":
        f, oracle = formulation("edm"), edm_oracle
        levels = edm_levels(steps, f.sigma_min, f.sigma_max, f.rho)
    else:
        f, oracle = formulation("flow"), flow_oracle
        levels = flow_levels(steps, shift=1.0)
    plan = ode_plan(f, levels, method)
    x = sample_numpy(plan, oracle, (2000,), seed=0)
    start = plan.init_scale * np.random.default_rng(0).standard_normal(2000)
    if name == "edm":  # the standardised variable is constant along the ODE
        exact = MU + S / np.sqrt(S**2 + f.sigma_max**2) * (start - MU)
    else:
        exact = MU + S * start
    return float(np.max(np.abs(x - exact)))


@pytest.mark.parametrize("name", ["edm", "flow"])
@pytest.mark.parametrize("method, order", [("euler", 1), ("heun", 2), ("midpoint", 2)])
def test_ode_samplers_converge_at_their_order(name, method, order):
    errors = [exact_error(name, method, n) for n in (16, 32, 64)]
    assert errors[-1] < (0.1 if order == 1 else 0.01), errors
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    # Doubling the steps divides the error by about 2^order.
    assert min(ratios) > 0.7 * 2**order, (errors, ratios)


def test_edm_churn_samples_the_data_distribution():
    f = formulation("edm")
    levels = edm_levels(256, f.sigma_min, f.sigma_max, f.rho)
    churn = Churn(S_churn=40.0, S_min=0.05, S_max=50.0, S_noise=1.0)  # exact D: no excess
    plan = ode_plan(f, levels, "heun", churn)
    assert np.any(plan.coefs[:, 7] > 0)  # noise is added
    x = sample_numpy(plan, edm_oracle, (100_000,), seed=1)
    assert abs(x.mean() - MU) < 0.01 and abs(x.std() - S) < 0.01


def test_guidance_interval_selects_rows_by_level():
    f = formulation("flow")
    plan = ode_plan(f, flow_levels(10, 1.0), "euler", guidance=3.0, interval=(0.2, 0.8))
    inside = (plan.levels > 0.2) & (plan.levels <= 0.8)
    assert np.array_equal(plan.guidance == 3.0, inside) and np.all(plan.guidance[~inside] == 1.0)


REFERENCE = json.loads((Path(__file__).parent / "reference" / "ode_steps.json").read_text())


@pytest.mark.parametrize("name, record", [("edm", "edm_euler"), ("flow", "flow_euler_shift3")])
def test_euler_steps_match_diffusers(name, record):
    """diffusers' EDMEulerScheduler and FlowMatchEulerDiscreteScheduler (shift 3), stepped
    on stored network outputs (tests/reference/ode_reference.py), against our Euler plan
    over the same levels: every step's sample, and EDM's scaled input and noise label."""
    ref = REFERENCE[record]
    f = formulation(name, noise_label_scale=1.0)
    plan = ode_plan(f, np.array(ref["sigmas"]), "euler")
    x = np.array(ref["samples"][0])
    for i, row in enumerate(plan.coefs):
        c_in, c_noise, c_skip, c_out, a, b = row[:6]
        if name == "edm":
            np.testing.assert_allclose(c_in * x, ref["scaled_inputs"][i], rtol=1e-5)
            assert c_noise == pytest.approx(ref["noise_labels"][i], rel=1e-5)
        d = c_skip * x + c_out * np.array(ref["outputs"][i])
        x = a * d + b * x
        np.testing.assert_allclose(x, ref["samples"][i + 1], rtol=1e-5, atol=1e-5, err_msg=i)


class EDMOracle(nn.Cell):
    """F(c_in x; c_noise) whose preconditioned D is the Gaussian data's exact denoiser."""

    def __init__(self, edm):
        super().__init__()
        self.edm = edm

    def construct(self, scaled, c_noise, y):
        sigma = ops.exp(4.0 * c_noise / self.edm.noise_label_scale)[:, None, None, None]
        sd2 = self.edm.sigma_data**2
        x = scaled * ops.sqrt(sigma**2 + sd2)  # undo c_in
        d = MU + S**2 / (S**2 + sigma**2) * (x - MU)
        c_skip, c_out = (
            sd2 / (sigma**2 + sd2),
            sigma * self.edm.sigma_data / ops.sqrt(sigma**2 + sd2),
        )
        return (d - c_skip * x) / c_out


def test_the_compiled_ode_step_solves_the_ode_on_an_oracle():
    """ODEStep and p_sample_loop (the path ddpm.sample takes) on the exact denoiser: Heun
    over 32 steps lands on the ODE's exact endpoint, to float32 and discretisation error."""
    edm = formulation("edm")
    plan = ode_plan(edm, edm_levels(32, edm.sigma_min, edm.sigma_max, edm.rho), "heun")
    assert plan.num_steps == 63  # 2 N - 1 network evaluations
    shape = (256, 1, 2, 2)
    x = p_sample_loop(ODEStep(EDMOracle(edm), clip_denoised=False), plan, shape, seed=3)
    start = plan.init_scale * np.random.default_rng(3).standard_normal(shape, dtype=np.float32)
    exact = MU + S / np.sqrt(S**2 + edm.sigma_max**2) * (start - MU)
    assert np.max(np.abs(x - np.clip(exact, -1, 1))) < 0.03  # the loop returns [-1, 1]


class Zeros(nn.Cell):
    def construct(self, x, c_noise, y):
        return ops.zeros_like(x)


class Square(nn.Cell):
    def construct(self, d):
        return d * d


def test_preconditioned_loss_regresses_the_target_with_its_weight():
    """With F = 0 the loss is weight * mean(F*^2), F* = p x_0 + q eps (flow: eps - x_0)."""
    rng = np.random.default_rng(0)
    flow = formulation("flow")
    x0 = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    eps = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    levels = flow.levels_table(flow.sample_levels(rng, 4))
    loss = PreconditionedLoss(Zeros(), Square())
    out = loss(Tensor(x0), Tensor(levels), Tensor(eps), Tensor(np.zeros(4, np.int32)))
    expected = ((eps - x0) ** 2).mean(axis=(1, 2, 3)) * levels[:, 6]
    np.testing.assert_allclose(out.asnumpy(), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "overrides, refusal",
    [
        (
            ["formulation=edm", "sampler=dpm_solver"],
            "sampler=dpm_solver does not sample formulation=edm; its samplers are: euler, heun",
        ),
        (
            ["sampler=heun"],
            "sampler=heun does not sample formulation=ddpm; its samplers are: ddim, ddpm, dpm_",
        ),
        (
            ["formulation=flow", "sampler=heun", "sampler.S_churn=10"],
            "churn applies to formulation=edm",
        ),
        (
            ["formulation=edm", "sampler=heun", "sampler.shift=3"],
            "time shift applies to formulation=flow",
        ),
        (
            ["formulation=edm", "sampler=heun", "loss.p2_gamma=1"],
            "weights its levels by its own lambda",
        ),
        (
            ["formulation=flow", "sampler=euler", "trainer.bpd_n=8"],
            "bits/dim is DDPM's variational bound",
        ),
        (["formulation=flow", "sampler=euler", "sampler.steps=null"], "needs sampler.steps"),
    ],
)
def test_keys_that_do_not_apply_to_a_formulation_are_refused(overrides, refusal):
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        run = resolve(compose_config(*overrides))
        make_ode_plan(run["sampler"], denoiser_of(compose_config(*overrides))[0].formulation)


@pytest.mark.parametrize(
    "name, sampler", [pytest.param("edm", "heun", marks=pytest.mark.slow), ("flow", "midpoint")]
)
def test_a_continuous_formulation_trains_and_samples_a_guided_class_model(tmp_path, name, sampler):
    """The real trainer on Fashion-MNIST (tiny): the step draws levels, the loss is finite
    and falls, and the end-of-run grid samples with guidance inside an interval."""
    cfg = compose_config(
        f"formulation={name}",
        f"sampler={sampler}",
        "sampler.steps=3",
        "conditioning=class",
        "sampler.guidance=2",
        "sampler.guidance_interval=[0.2,0.8]",
        "trainer.steps=6",
        "trainer.log_every=3",
        "trainer.lr=1e-3",
    )
    trainer = trainer_of(cfg, tmp_path)
    metrics = trainer.fit()
    assert np.isfinite(metrics["final_loss"])
    losses = events(tmp_path).Scalars("train/loss")
    assert [e.step for e in losses] == [3, 6]
    assert (tmp_path / "samples.png").is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 6


def test_schedule_and_objective_overrides_are_refused_under_a_continuous_formulation():
    cfg = compose_config("formulation=edm", "sampler=heun", "schedule=linear")
    with pytest.raises(ConfigError, match="schedule=linear: formulation=edm does not use"):
        check_overrides(cfg, ["formulation=edm", "sampler=heun", "schedule=linear"])
    check_overrides(cfg, ["formulation=edm", "sampler=heun"])  # no error
    ddpm_cfg = compose_config("schedule=linear")
    check_overrides(ddpm_cfg, ["schedule=linear"])  # DDPM uses it


def test_a_continuous_run_reports_no_bits_per_dim():
    cfg = compose_config("formulation=edm", "sampler=heun")
    run = resolve(cfg)
    diffusion, _ = denoiser_of(cfg)
    with pytest.raises(ConfigError, match="formulation=edm defines none"):
        build_likelihood(4, 10, run["dataset"], diffusion, "large")


@pytest.mark.slow
def test_guided_flow_and_edm_runs_end_to_end_through_the_cli(tmp_path):
    """python -m ddpm.run trains a class-conditional, guided run of each formulation, and
    python -m ddpm.sample draws named classes from it."""
    for name, sampler in (("flow", "midpoint"), ("edm", "heun")):
        run_dir = tmp_path / name
        train = cli(
            "-m", "ddpm.run", *CLI_TINY, f"formulation={name}", f"sampler={sampler}",
            "sampler.steps=4", "conditioning=class", "sampler.guidance=3",
            "sampler.guidance_interval=[0.2,0.8]", f"hydra.run.dir={run_dir}",
        )  # fmt: skip
        assert train.returncode == 0, train.stderr[-2000:]
        assert f"formulation {name}" in train.stderr + train.stdout
        out = tmp_path / f"{name}_samples"
        sample = cli("-m", "ddpm.sample", str(run_dir), "--class", "Sneaker,9", "--n", "4",
                     "--out", str(out))  # fmt: skip
        assert sample.returncode == 0, sample.stderr[-2000:]
        assert list(out.glob("samples_*.png"))
        refused = cli("-m", "ddpm.sample", str(run_dir), "--sampler", "ddim", "--n", "2")
        assert refused.returncode != 0
        assert f"does not sample formulation={name}" in refused.stderr
