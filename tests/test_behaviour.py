"""Fixed-seed runs give bitwise what tests/reference/behaviour.json recorded.

The figures come from the real tools in subprocesses (tests/reference/behaviour.py): the
weights of a tiny run, 20 losses of the DDPM recipe, the tiny run's samples. The fused
kernels are compiled for the CPU that runs them, so the figures are compared bitwise on
the CPU model that recorded them, and to float32 rounding on any other.
"""

import json

import numpy as np
import pytest

from tests.reference import behaviour

pytestmark = pytest.mark.xdist_group("behaviour")  # one worker measures, once


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return behaviour.measure(tmp_path_factory.mktemp("behaviour"))


@pytest.fixture(scope="module")
def recorded():
    stored = json.loads(behaviour.RECORD.read_text())
    return stored.get(behaviour.cpu_model()), stored


def test_default_recipe_losses_are_unchanged(measured, recorded):
    same_cpu, stored = recorded
    if same_cpu is not None:
        assert measured["default_20_losses"] == same_cpu["default_20_losses"]
    else:
        reference = next(iter(stored.values()))["default_20_losses"]
        np.testing.assert_allclose(measured["default_20_losses"], reference, rtol=1e-4)


def test_tiny_run_weights_and_samples_are_unchanged(measured, recorded):
    same_cpu, stored = recorded
    if same_cpu is not None:
        assert measured["tiny_weights_sha256"] == same_cpu["tiny_weights_sha256"]
        assert measured["tiny_samples_sha256"] == same_cpu["tiny_samples_sha256"]
    else:  # another CPU: the samples' mean within a grey level
        reference = next(iter(stored.values()))["tiny_samples_mean"]
        assert abs(measured["tiny_samples_mean"] - reference) < 1.0


def test_a_run_saved_before_the_package_layout_loads_and_samples(tmp_path, recorded):
    """tests/reference/pre_layout_run: `experiment=tiny seed=3` trained by the flat-package
    code (its config and final checkpoint). The library loads it and draws the samples
    recorded for that run."""
    import hashlib
    import shutil

    import ddpm

    run_dir = tmp_path / "run"
    shutil.copytree(behaviour.PRE_LAYOUT_RUN, run_dir)
    run = ddpm.load_run(run_dir)
    images, labels = run.sample(int(behaviour.SAMPLE_ARGS[1]), seed=int(behaviour.SAMPLE_ARGS[3]))
    assert labels is None and images.shape == (6, 28, 28, 1) and images.dtype == np.uint8
    same_cpu, stored = recorded
    if same_cpu is not None:
        assert hashlib.sha256(images.tobytes()).hexdigest() == same_cpu["tiny_samples_sha256"]
    else:
        reference = next(iter(stored.values()))["tiny_samples_mean"]
        assert abs(images.astype(np.float64).mean() - reference) < 1.0
