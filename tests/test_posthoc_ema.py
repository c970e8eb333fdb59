"""Post-hoc EMA (ddpm.training.phema): the power EMA, its closed form, the reconstruction."""

import numpy as np
import pytest

from ddpm.config.errors import ConfigError
from ddpm.training import phema
from tests.conftest import FLOW_RUN

pytestmark = pytest.mark.xdist_group("flow_run")


def test_sigma_rel_and_exponent_invert_each_other():
    gamma = phema.std_to_exp([0.02, 0.05, 0.1, 0.2])
    np.testing.assert_allclose(phema.exp_to_std(gamma), [0.02, 0.05, 0.1, 0.2], rtol=1e-12)
    assert np.all(np.diff(gamma) < 0)  # a longer EMA has a smaller exponent


@pytest.mark.parametrize("sigma_rel", [0.05, 0.1, 0.25])
def test_power_ema_matches_its_closed_form_on_a_scalar_sequence(sigma_rel):
    theta = np.random.default_rng(0).standard_normal(300)
    ema = 0.0
    for t, value in enumerate(theta, start=1):
        beta = phema.power_beta(sigma_rel, t)
        ema = beta * ema + (1 - beta) * value
    weights = phema.closed_form_weights(sigma_rel, len(theta))
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert ema == pytest.approx(float(weights @ theta), rel=1e-10)
    # its width relative to t is sigma_rel (eq. 123), up to the discretisation
    tau = np.arange(1, 301) / 300
    mean = weights @ tau
    assert np.sqrt(weights @ (tau - mean) ** 2) == pytest.approx(sigma_rel, rel=0.02)


def test_the_compiled_update_follows_the_recursion_on_every_parameter(graph_mode):
    from mindspore import Parameter, ParameterTuple, Tensor

    rng = np.random.default_rng(1)
    weights = ParameterTuple(
        [Parameter(Tensor(rng.standard_normal(s).astype(np.float32)), name=f"w{i}")
         for i, s in enumerate([(3, 2), (5,)])]
    )  # fmt: skip
    emas = [phema.flat_copy(list(weights), i) for i in range(2)]
    update = phema.PowerEmaUpdate(emas, weights)
    expected = [e.asnumpy().astype(np.float64) for e in emas]
    for t in range(1, 6):
        for w in weights:
            w.set_data(Tensor(rng.standard_normal(w.shape).astype(np.float32)))
        betas = [phema.power_beta(s, t) for s in (0.05, 0.2)]
        update(Tensor(np.array(betas, np.float32)))
        theta = np.concatenate([w.asnumpy().ravel() for w in weights])
        expected = [b * e + (1 - b) * theta for b, e in zip(betas, expected, strict=True)]
    for e, want in zip(emas, expected, strict=True):
        np.testing.assert_allclose(e.asnumpy(), want, rtol=1e-5, atol=1e-6)
    layout = [(w.name, tuple(w.shape)) for w in weights]
    assert phema.unflatten(emas[0].asnumpy(), layout)["w0"].shape == (3, 2)


def test_solved_coefficients_reproduce_a_tracked_profile_exactly():
    steps, stds = [100, 100, 200, 200], [0.05, 0.1, 0.05, 0.1]
    x = phema.solve_coefficients(steps, stds, 200, [0.1, 0.07])
    np.testing.assert_allclose(x[:, 0], [0, 0, 0, 1], atol=1e-9)
    np.testing.assert_allclose(x.sum(axis=0), 1.0)


def test_training_writes_snapshots_and_a_tracked_sigma_rel_reconstructs_to_rounding(flow_run):
    folder = flow_run.path / "posthoc"
    snaps = phema.read_snapshots(folder)
    assert [s[0] for s in snaps] == [3, 6, 9] and snaps[0][1] == [0.05, 0.1]
    step, (tracked, between) = phema.reconstruct(folder, [0.1, 0.07])
    assert step == 9
    last = snaps[-1][2]
    for name, value in tracked.items():
        np.testing.assert_allclose(value, last[phema.phema_name(1, name)], rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(between[n], tracked[n]) for n in tracked)


def test_a_reconstruction_saves_as_a_checkpoint_that_samples(flow_run):
    from ddpm.api import load_run

    (path,) = phema.save_reconstructions(flow_run.path, [0.07])
    run = load_run(flow_run.path, path)
    assert run.step == 9
    images, _ = run.sample(4, steps=2)
    assert images.shape[0] == 4 and np.all(np.isfinite(images))


def test_snapshots_over_the_disk_budget_are_refused(tmp_path):
    from ddpm.api import train

    with pytest.raises(ConfigError, match="over trainer.posthoc_max_mb=0.01"):
        train([*FLOW_RUN, "trainer.posthoc_max_mb=0.01"], tmp_path)


def test_missing_snapshots_say_how_to_write_them(tmp_path):
    from ddpm.config.errors import CheckpointError

    with pytest.raises(CheckpointError, match="trainer.posthoc_ema="):
        phema.read_snapshots(tmp_path)


@pytest.mark.slow
def test_ema_cli_scores_each_sigma_rel_beside_the_runs_ema(flow_run, feature_cache, tmp_path):
    import os

    from tests.test_cli import cli

    env = {**os.environ, "DDPM_CACHE": str(feature_cache)}
    args = [str(flow_run.path), "--sigma-rel", "0.04,0.2", "--n", "40", "--out", str(tmp_path)]
    proc = cli("-m", "ddpm.ema", *args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (tmp_path / "posthoc_ema.md").read_text()
    assert "| 0.04 |" in table and "| 0.2 |" in table and "| run EMA |" in table
    assert (tmp_path / "posthoc_ema.png").is_file()
    assert (flow_run.path / "posthoc" / "ema_sigma0.040.ckpt").is_file()
