"""Interruption, resume, numerical faults and failing sweeps, on real subprocesses."""

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
import yaml

from ddpm.training import checkpoint
from ddpm.training.budget import capacity_for
from tests.test_cli import CLI_TINY, ROOT, cli, events

STEPS = [o for o in CLI_TINY if not o.startswith(("trainer.steps=", "trainer.checkpoint_every="))]
# Long enough (a few seconds of steps after the compile) for a signal to land mid-run.
TOTAL = 120
LONG = [*STEPS, f"trainer.steps={TOTAL}", "trainer.checkpoint_every=20", "trainer.log_every=5"]


def final_weights(run_dir: Path) -> dict[str, np.ndarray]:
    params, meta = checkpoint.load(run_dir / "checkpoints" / f"step_{TOTAL:08d}.ckpt")
    assert meta["step"] == TOTAL
    return {k: v.asnumpy() for k, v in params.items()}


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ddpm.run", *LONG, f"hydra.run.dir={run_dir}", *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_training(proc: subprocess.Popen, min_step: int) -> str:
    """Read the output until tqdm shows at least `min_step` steps done (it skips counts)."""
    seen = ""
    while proc.poll() is None:
        seen += proc.stdout.read(64)
        if any(int(n) >= min_step for n in re.findall(rf"(\d+)/{TOTAL}\b", seen)):
            return seen
    raise AssertionError(f"run ended before step {min_step}:\n{seen[-2000:]}")


@pytest.fixture(scope="module")
def uninterrupted_dir(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("full")
    proc = cli("-m", "ddpm.run", *LONG, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_dir) -> dict[str, np.ndarray]:
    return final_weights(uninterrupted_dir)


def loss_curve(run_dir: Path) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events(run_dir).Scalars("train/loss")]


@pytest.mark.slow
def test_sigkill_campaign_loses_nothing(uninterrupted_dir, uninterrupted, tmp_path):
    """SIGKILL at random moments, resume each time: the weights and the TensorBoard loss
    curve equal an uninterrupted run's: the same steps, the same values, nothing twice."""
    rng = random.Random(15)
    resumed_from = 0
    for kill in range(5):
        proc = start(tmp_path, *(["trainer.resume=latest"] if kill else []))
        target = rng.randint(resumed_from + 1, TOTAL - 5)
        try:
            wait_for_training(proc, target)
        except AssertionError:  # it finished before the target: nothing left to kill
            proc.wait()
            break
        time.sleep(rng.uniform(0.0, 1.0))
        proc.kill()
        proc.communicate(timeout=60)
        found = checkpoint.candidates(tmp_path / "checkpoints")
        resumed_from = checkpoint.load(found[0])[1]["step"] if found else 0
    done = cli("-m", "ddpm.run", *LONG, f"hydra.run.dir={tmp_path}", "trainer.resume=latest")
    assert done.returncode == 0, done.stderr[-2000:]
    for name, value in final_weights(tmp_path).items():  # bitwise, on CPU
        np.testing.assert_array_equal(value, uninterrupted[name], err_msg=name)
    assert loss_curve(tmp_path) == loss_curve(uninterrupted_dir)
    assert [s for s, _ in loss_curve(tmp_path)] == list(range(5, TOTAL + 1, 5))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == TOTAL


def test_committed_events_survive_sigkill(tmp_path):
    """Whatever the logger held when commit() returned is on disk, though the process dies
    at once; tensorboardX's flush() alone leaves its queue unwritten."""
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from ddpm.training.logger import TensorBoardLogger\n"
        "log = TensorBoardLogger(Path(sys.argv[1]))\n"
        "for step in range(1, 201):\n"
        "    log.scalars({'train/loss': 1.0 / step}, step)\n"
        "log.commit()\n"
        "log.scalars({'train/loss': 0.0}, 201)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = cli("-c", script, str(tmp_path))
    assert proc.returncode == -signal.SIGKILL
    steps = [step for step, _ in loss_curve(tmp_path)]
    assert steps[:200] == list(range(1, 201))


def test_sigterm_then_resume_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    proc = start(tmp_path)
    wait_for_training(proc, 7)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:]
    assert "trainer.resume=" in out
    _, meta = checkpoint.load(checkpoint.candidates(tmp_path / "checkpoints")[0])
    stopped_at = meta["step"]
    assert 7 <= stopped_at < TOTAL

    resumed = cli("-m", "ddpm.run", *LONG, f"hydra.run.dir={tmp_path}", "trainer.resume=latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"at step {stopped_at}" in resumed.stdout + resumed.stderr
    for name, value in final_weights(tmp_path).items():  # bitwise, on CPU
        np.testing.assert_array_equal(value, uninterrupted[name], err_msg=name)
    steps = [e.step for e in events(tmp_path).Scalars("train/loss")]
    assert steps == list(range(5, TOTAL + 1, 5))  # one curve: no duplicate or missing step


@pytest.mark.slow
def test_sigterm_during_accumulation_then_resume_is_exact_snapshots_included(tmp_path):
    """With trainer.accumulate=4 a signal lands inside a step's micro-batches far more
    often than between steps; the step finishes, and the resumed run is bitwise the
    uninterrupted one: weights, power EMAs and every post-hoc EMA snapshot."""
    extra = ["trainer.accumulate=4", "trainer.posthoc_ema=[0.05,0.1]", "trainer.posthoc_every=10"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert cli("-m", "ddpm.run", *LONG, f"hydra.run.dir={full}", *extra).returncode == 0
    proc = start(cut, *extra)
    wait_for_training(proc, 5)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out[-2000:]
    resumed = cli("-m", "ddpm.run", *LONG, f"hydra.run.dir={cut}", *extra, "trainer.resume=latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = final_weights(full)
    assert any(n.startswith("accum.") for n in expected)
    assert "phema1" in expected
    for name, value in final_weights(cut).items():
        np.testing.assert_array_equal(value, expected[name], err_msg=name)
    snapshots = sorted(p.name for p in (full / "posthoc").glob("phema_*.npz"))
    assert len(snapshots) == TOTAL // 10
    for name in snapshots:
        with np.load(full / "posthoc" / name) as a, np.load(cut / "posthoc" / name) as b:
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}: {key}")


@pytest.mark.slow
def test_resume_keeps_what_the_checkpoint_step_logged(tmp_path):
    """Resumed from step 20, the run rewrites the curve after 20 and keeps the point at 20."""
    args = [*STEPS, "trainer.steps=40", "trainer.checkpoint_every=20", "trainer.log_every=5"]
    first = cli("-m", "ddpm.run", *args, f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-2000:]
    ckpt = tmp_path / "checkpoints" / "step_00000020.ckpt"
    again = cli("-m", "ddpm.run", *args, f"hydra.run.dir={tmp_path}", f"trainer.resume={ckpt}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "at step 20" in again.stdout + again.stderr
    steps = [e.step for e in events(tmp_path).Scalars("train/loss")]
    assert steps == list(range(5, 41, 5))


@pytest.mark.slow
def test_resume_refuses_another_model(tmp_path):
    first = cli("-m", "ddpm.run", *STEPS, "trainer.steps=2", f"hydra.run.dir={tmp_path}")
    assert first.returncode == 0, first.stderr[-2000:]
    other = cli(
        "-m",
        "ddpm.run",
        *STEPS,
        "trainer.steps=4",
        "block=convnext",
        "model.dim=16",
        f"hydra.run.dir={tmp_path / 'new'}",
        f"trainer.resume={tmp_path}",
    )
    assert other.returncode == 2
    assert "block.name" in other.stderr and "model.dim" in other.stderr
    longer = cli(
        "-m",
        "ddpm.run",
        *STEPS,
        "trainer.steps=4",
        "trainer.log_every=1",
        f"hydra.run.dir={tmp_path / 'new'}",
        f"trainer.resume={tmp_path}",
    )
    assert longer.returncode == 0, longer.stderr[-2000:]  # more steps, other logging: fine


@pytest.mark.slow
def test_corrupt_latest_falls_back_to_the_previous(tmp_path):
    ok = cli(
        "-m",
        "ddpm.run",
        *STEPS,
        "trainer.steps=4",
        "trainer.checkpoint_every=2",
        f"hydra.run.dir={tmp_path}",
    )
    assert ok.returncode == 0, ok.stderr[-2000:]
    latest = tmp_path / "checkpoints" / "step_00000004.ckpt"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated
    with pytest.raises(checkpoint.CheckpointError, match=str(latest)):
        checkpoint.load(latest)
    again = cli(
        "-m",
        "ddpm.run",
        *STEPS,
        "trainer.steps=6",
        f"hydra.run.dir={tmp_path}",
        "trainer.resume=latest",
    )
    assert again.returncode == 0, again.stderr[-2000:]
    log = again.stdout + again.stderr
    assert "step_00000004.ckpt" in log and "at step 2" in log


def test_exploding_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    proc = cli(
        "-m",
        "ddpm.run",
        *STEPS,
        "trainer.steps=400",
        "trainer.lr=1e6",
        "trainer.warmup_steps=0",
        "trainer.grad_clip=0",
        "trainer.checkpoint_every=1",
        "trainer.keep_checkpoints=1000",
        "loss=mse",
        f"hydra.run.dir={tmp_path}",
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "non-finite loss or gradient at step" in proc.stderr
    bad_step = int(proc.stderr.split("error: non-finite loss or gradient at step ")[1].split()[0])
    saved = sorted(checkpoint.candidates(tmp_path / "checkpoints"))
    assert saved and all(int(p.stem.split("_")[1]) < bad_step for p in saved)
    params, _ = checkpoint.load(saved[-1])
    assert all(
        np.all(np.isfinite(v.asnumpy())) for k, v in params.items() if isinstance(v, ms.Parameter)
    )


def test_a_failing_run_does_not_stop_the_sweep(tmp_path):
    proc = cli(
        "-m",
        "ddpm.run",
        "-m",
        *STEPS,
        "trainer.steps=2",
        "model.dim=8,0",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert proc.returncode == 1
    assert "1 run(s) of the sweep failed" in proc.stderr and "model.dim=0" in proc.stderr
    good = [p for p in tmp_path.iterdir() if "model.dim=8" in p.name]
    assert len(good) == 1 and (good[0] / "samples.png").is_file()


def test_interrupt_leaves_no_partial_checkpoint(tmp_path):
    proc = start(tmp_path)
    wait_for_training(proc, 3)
    proc.send_signal(signal.SIGINT)  # MindSpore's runtime forwards Ctrl-C as SIGTERM
    proc.communicate(timeout=300)
    assert proc.returncode in (128 + signal.SIGINT, 128 + signal.SIGTERM)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "latest" in files and not [f for f in files if "tmp" in f]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() in files


def budgeted_run(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    tiny = [*STEPS, "trainer.log_every=5"]
    return cli("-m", "ddpm.run", *tiny, f"hydra.run.dir={run_dir}", *extra)


@pytest.mark.slow
def test_minutes_fix_the_step_count_and_record_it(tmp_path):
    proc = budgeted_run(tmp_path, "trainer.minutes=0.05")
    assert proc.returncode == 0, proc.stderr[-2000:]
    budget = json.loads((tmp_path / "budget.json").read_text())
    assert budget["minutes"] == 0.05 and budget["steps_per_s"] > 0 and budget["timed_steps"] >= 3
    assert budget["steps"] == int(0.05 * 60 * budget["steps_per_s"])
    assert budget["capacity"] == capacity_for(0.05) >= budget["steps"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert 0 < summary["steps"] <= budget["capacity"] and summary["budget"] == budget
    saved = yaml.safe_load((tmp_path / ".hydra" / "config.yaml").read_text())["trainer"]
    assert (saved["steps"], saved["minutes"]) == (budget["steps"], None)
    acc = events(tmp_path)
    assert acc.Scalars("budget/steps")[0].value == budget["steps"]
    assert acc.Scalars("train/loss")[-1].step == summary["steps"]
    log = proc.stderr + proc.stdout
    assert f"= {budget['steps']} steps" in log
    assert f"budget: {summary['steps']} steps in " in log


@pytest.mark.slow
def test_a_budgeted_run_is_the_run_of_its_step_count(tmp_path):
    """Timing the probe leaves no trace: until pacing first re-fixes the count (a tenth of
    the budget in), a run of the recorded steps trains the same weights; a resume keeps the
    recorded count, whatever trainer.minutes says now."""
    budgeted, plain = tmp_path / "budgeted", tmp_path / "plain"
    every = ["trainer.checkpoint_every=2", "trainer.keep_checkpoints=100000"]
    first = budgeted_run(budgeted, "trainer.minutes=0.05", *every)
    assert first.returncode == 0, first.stderr[-2000:]
    steps = json.loads((budgeted / "budget.json").read_text())["steps"]
    again = budgeted_run(plain, f"trainer.steps={steps}", *every)
    assert again.returncode == 0, again.stderr[-2000:]
    ckpt = "step_00000002.ckpt"
    a, _ = checkpoint.load(budgeted / "checkpoints" / ckpt)
    b, _ = checkpoint.load(plain / "checkpoints" / ckpt)
    for name, value in a.items():
        if "learning_rate" not in name:  # the budgeted run's table has room to grow
            np.testing.assert_array_equal(value.asnumpy(), b[name].asnumpy(), err_msg=name)
    resumed = budgeted_run(budgeted, "trainer.minutes=5", "trainer.resume=latest")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = resumed.stdout + resumed.stderr
    assert f"budget: {steps} steps, as fixed when the run started" in log
    assert "finished at step" in log
