"""ddpm.export: MindIR steps and a coefficient table that plain MindSpore samples from."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.test_cli import cli
from tests.test_readme import python_section

pytestmark = pytest.mark.xdist_group("flow_run")  # tests.conftest.flow_run


def test_the_readme_loop_samples_the_export_as_ddpm_sample_does(flow_run, tmp_path):
    out = tmp_path / "export"
    proc = cli("-m", "ddpm.export", str(flow_run.path), "--batch", "10", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["plan.npz", "step0.mindir", "step1.mindir"]
    # the README's script, in a fresh interpreter that cannot import ddpm
    code = "import sys; sys.modules['ddpm'] = None\n" + python_section("Export")
    code += "\nnp.save('samples.npy', samples)\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert script.returncode == 0, script.stderr[-3000:]
    exported = np.load(tmp_path / "samples.npy")
    drawn = flow_run.sample(10, seed=0)  # what python -m ddpm.sample <run> --n 10 draws
    ours = np.clip((exported + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert exported.shape == (10, 1, 28, 28)
    assert np.abs(ours.astype(int) - drawn.images.astype(int)).max() <= 1
    assert np.mean(ours == drawn.images) > 0.99
    plan = np.load(out / "plan.npz")
    np.testing.assert_array_equal(plan["labels"], drawn.labels)
    assert set(plan["graph"]) == {0, 1}  # guided inside the interval, plain outside


def test_export_of_a_missing_run_names_it(tmp_path):
    proc = cli("-m", "ddpm.export", str(tmp_path / "nowhere"))
    assert proc.returncode != 0 and "nowhere" in proc.stderr
