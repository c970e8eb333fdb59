import numpy as np
import pytest
from mindspore import Tensor

from ddpm.config.groups import default_section
from ddpm.config.registry import ConfigError
from ddpm.diffusion.losses import LOSSES, LossWeighting, loss_weights, p2_weights
from ddpm.diffusion.objectives import OBJECTIVES


def run(name, diff, **keys):
    distance = LOSSES.resolve(default_section("loss", name, **keys))()
    return distance(Tensor(np.asarray(diff, np.float32))).asnumpy()


def test_huber_is_smooth_l1():
    d = np.array([-3.0, -1.0, -0.5, 0.0, 0.2, 1.0, 2.5])
    expected = np.where(np.abs(d) < 1, 0.5 * d**2, np.abs(d) - 0.5)
    np.testing.assert_allclose(run("huber", d), expected, rtol=1e-6)


def test_huber_delta():
    d = np.array([0.1, 0.5, 2.0])
    np.testing.assert_allclose(
        run("huber", d, delta=0.25), [0.5 * 0.01 / 0.25, 0.5 - 0.125, 2 - 0.125], rtol=1e-6
    )


def test_mse_and_l1():
    d = np.array([-2.0, 0.5])
    np.testing.assert_allclose(run("mse", d), [4.0, 0.25])
    np.testing.assert_allclose(run("l1", d), [2.0, 0.5])


def test_p2_gamma_zero_is_uniform():
    snr = np.array([100.0, 1.0, 0.01])
    np.testing.assert_array_equal(p2_weights(snr, 0.0, 1.0), np.ones(3))


def test_p2_choi_recommended():
    snr = np.array([100.0, 1.0, 0.01])
    np.testing.assert_allclose(p2_weights(snr, 1.0, 1.0), 1 / (1 + snr))


def test_p2_rejects_k0_at_zero_snr():
    with pytest.raises(ConfigError, match="p2_k"):
        p2_weights(np.array([1.0, 0.0]), 1.0, 0.0)


def test_min_snr_per_objective():
    snr = np.array([20.0, 5.0, 0.5])
    expected = {
        "pred_noise": [0.25, 1.0, 1.0],
        "pred_v": [5 / 21, 5 / 6, 0.5 / 1.5],
        "pred_x0": [5.0, 5.0, 0.5],
    }
    for name, weights in expected.items():
        np.testing.assert_allclose(OBJECTIVES.get(name)().min_snr_weight(snr, 5.0), weights)


def test_weights_combine():
    snr = np.array([20.0, 0.5])
    weighting = LossWeighting(p2_gamma=1.0, p2_k=1.0, min_snr_gamma=5.0)
    got = loss_weights(snr, OBJECTIVES.get("pred_noise")(), weighting)
    np.testing.assert_allclose(got, [1 / 21 * 0.25, 1 / 1.5])
