"""The real Hydra CLI in subprocesses, read back through TensorBoard's EventAccumulator."""

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

ROOT = Path(__file__).resolve().parent.parent
CLI_TINY = ["experiment=tiny"]  # the TINY overrides as one recipe: short run names


def cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """`python <args>` in a subprocess, output captured as text."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def hparams_of(acc: EventAccumulator) -> dict:
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.string_value or v.number_value for k, v in info.hparams.items()}


# The tests of one trained run share a worker, so that the run trains once.
on_trained_run = pytest.mark.xdist_group("trained_run")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    proc = cli(
        "-m", "ddpm.run", "schedule=cosine", "block=resnet", *CLI_TINY, f"hydra.run.dir={run_dir}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "alpha_bar_T" in proc.stderr + proc.stdout
    return run_dir


@on_trained_run
def test_run_writes_events_samples_and_checkpoint(trained_run):
    acc = events(trained_run)
    tags = acc.Tags()
    for tag in [
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "perf/images_per_s",
        "schedule/alpha_bar_T",
        "hparam/final_loss",
    ]:
        assert tag in tags["scalars"], tag
    assert any(t.startswith("train/loss_q") for t in tags["scalars"])
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]
    assert all(np.isfinite(e.value) for e in acc.Scalars("train/loss"))
    assert {"samples/ema", "data/forward_process"} <= set(tags["images"])
    assert acc.Images("samples/ema")[-1].step == 4
    assert "config/text_summary" in tags["tensors"]
    hp = hparams_of(acc)
    assert hp["schedule"] == "cosine" and hp["block"] == "resnet" and hp["steps"] == 4
    assert (trained_run / "samples.png").is_file()
    assert (trained_run / "checkpoints" / "step_00000004.ckpt").is_file()


@on_trained_run
def test_sample_cli_writes_grid_npz_and_gif(trained_run, tmp_path):
    proc = cli(
        "-m",
        "ddpm.sample",
        str(trained_run),
        "--n",
        "4",
        "--sampler",
        "ddpm",
        "--gif",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = np.load(tmp_path / "samples_ddpm.npz")["images"]
    assert images.shape == (4, 28, 28, 1) and images.dtype == np.uint8
    gif = Image.open(tmp_path / "samples_ddpm.gif")
    assert gif.n_frames > 2
    assert Image.open(tmp_path / "samples_ddpm.png").size[0] > 28


def test_conditional_run_and_class_sampling(tmp_path):
    """A class-conditional run's grid has one row per class; ddpm.sample draws the classes
    asked for, by name, or a grid of one row per class."""
    run = tmp_path / "run"
    proc = cli("-m", "ddpm.run", *CLI_TINY, "conditioning=class", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    acc = events(run)
    grid = acc.Images("samples/ema")[-1]  # sample_n 4 over 10 classes: 1 per row
    assert (grid.height, grid.width) == (10 * 30 + 2, 1 * 30 + 2)
    assert Image.open(run / "samples.png").size == (grid.width, grid.height)
    assert hparams_of(acc)["conditioning"] == "class"
    out = tmp_path / "samples"
    proc = cli(
        "-m", "ddpm.sample", str(run), "--per-class", "3", "--guidance", "2", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    drawn = np.load(out / "samples_ddim.npz")
    assert drawn["labels"].tolist() == [c for c in range(10) for _ in range(3)]
    assert Image.open(out / "samples_ddim.png").size == (3 * 30 + 2, 10 * 30 + 2)
    proc = cli("-m", "ddpm.sample", str(run), "--class", "Sneaker,9", "--n", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.load(out / "samples_ddim.npz")["labels"].tolist() == [7, 9, 7, 9]
    assert "of Sneaker, Ankle boot (guidance 1.0)" in proc.stdout
    refused = cli("-m", "ddpm.sample", str(run), "--class", "shoe", "--out", str(out))
    assert refused.returncode == 2 and "no class 'shoe'; the model's classes are" in refused.stderr


def test_unknown_option_fails_and_lists_valid_ones():
    proc = cli("-m", "ddpm.run", "schedule=exponential")
    assert proc.returncode != 0
    for name in ["cosine", "linear", "quadratic", "sigmoid"]:
        assert name in proc.stderr


def test_bad_value_fails_before_training(tmp_path):
    proc = cli(
        "-m", "ddpm.run", *CLI_TINY, "model.dim_mults=[1,2,2,2]", f"hydra.run.dir={tmp_path}"
    )
    assert proc.returncode == 2
    assert "not divisible" in proc.stderr
    assert not list(tmp_path.glob("events.out.tfevents.*"))


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The `error: ...` line a tool ends with; no traceback anywhere."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["trainer.batch_size=0"], "error: trainer.batch_size=0: must be > 0"),
        (["loss=mse", "+loss.delta=0.5"], "error: loss.delta: loss 'mse' does not take this key"),
        (["trainer.resume=/nowhere"], "error: trainer.resume='/nowhere': not 'latest'"),
    ],
)
def test_bad_config_is_one_line_before_anything_runs(args, message, tmp_path):
    proc = cli("-m", "ddpm.run", *CLI_TINY, *args, f"hydra.run.dir={tmp_path}")
    assert one_line_error(proc).startswith(message)
    assert not list(tmp_path.glob("events.out.tfevents.*"))


@on_trained_run
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ddpm.sample", "{tmp}"], "is not a run folder: it has no .hydra/config.yaml"),
        (["ddpm.sample", "{run}", "--n", "-3"], "argument --n: -3 must be >= 1"),
        (["ddpm.sample", "{run}", "--steps", "x"], "argument --steps: 'x' is not a whole number"),
        (["ddpm.sample", "{run}", "--sampler", "ddpm", "--eta", "1"], "--eta does not apply"),
        (["ddpm.sample", "{run}", "--checkpoint", "{tmp}/x.ckpt"], "x.ckpt is not a file"),
        (["ddpm.sample", "{run}", "--guidance", "2"], "needs a class-conditional model"),
        (["ddpm.sample", "{run}", "--class", "bag"], "--class and --per-class need a class-cond"),
        (["ddpm.evaluate", "{tmp}/none"], "{tmp}/none is not a folder"),
        (["ddpm.evaluate", "{run}", "--batch", "0"], "argument --batch: 0 must be >= 1"),
        (["ddpm.compare", "{tmp}"], "is not a sweep: no runs"),
        (["ddpm.guidance", "{run}", "--n", "4"], "is not a class-conditional run"),
        (["ddpm.guidance", "{run}", "--scales", "1,-2"], "every scale must be >= 0"),
        (["ddpm.launch", "--workers", "0"], "argument --workers: 0 must be >= 1"),
        (["ddpm.launch", "--workers", "1", "--master-port", "70000"], "not a TCP port"),
        (["ddpm.fit_features", "dataset=nope"], "Could not find 'dataset/nope'"),
        (["ddpm.fit_features", "--epochs", "0"], "argument --epochs: 0 must be >= 1"),
    ],
)
def test_bad_tool_input_is_one_line(args, message, trained_run, tmp_path, capsys):
    """Each tool's main(), in this process: exit code 2 and one error line."""
    fill = lambda s: s.format(tmp=tmp_path, run=trained_run)  # noqa: E731
    tool = importlib.import_module(args[0])
    try:
        code = tool.main([fill(a) for a in args[1:]])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert fill(message) in err.strip().splitlines()[-1]


@on_trained_run
def test_corrupt_run_config_names_the_file(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / ".hydra" / "config.yaml").write_text("schedule: [unclosed\n")
    line = one_line_error(cli("-m", "ddpm.sample", str(run), "--n", "2"))
    assert str(run / ".hydra" / "config.yaml") in line and "not a readable run config" in line


@pytest.mark.slow
def test_kernel_switch_in_the_environment_wins_over_the_config(tmp_path):
    env = {**os.environ, "DDPM_CPU_KERNELS": "0"}
    proc = cli("-m", "ddpm.run", *CLI_TINY, f"hydra.run.dir={tmp_path}", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fused CPU kernels: off" in proc.stdout + proc.stderr


def test_run_names_keep_what_varies_and_stay_short(monkeypatch):
    from ddpm.runtime.hydra_callbacks import SWEEP_KEYS_ENV, run_name

    monkeypatch.delenv(SWEEP_KEYS_ENV, raising=False)
    long_a = [f"trainer.k{i}={i}" for i in range(40)]
    long_b = [*long_a[:-1], "trainer.k39=40"]
    assert run_name(["schedule=cosine"]) == "schedule=cosine"
    assert run_name(["dataset.root=/a/b"]) == "dataset.root=_a_b"
    assert len(run_name(long_a)) == 120 and run_name(long_a) != run_name(long_b)
    monkeypatch.setenv(SWEEP_KEYS_ENV, "seed,schedule")
    job = ["experiment=tiny", "schedule=cosine", "trainer.steps=60", "seed=2"]
    assert run_name(job) == "schedule=cosine,seed=2"
