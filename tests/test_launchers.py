"""Sweeps through Hydra's launcher plugins (joblib, submitit) and the Optuna sweeper."""

import json
import math
import os
import subprocess

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from ddpm.config.groups import CONF_DIR, resolve
from ddpm.config.registry import ConfigError
from tests.conftest import compose_config
from tests.test_cli import cli, events


def sweep_runs(sweep, launcher: str, *overrides: str) -> subprocess.CompletedProcess:
    return cli(
        "-m",
        "ddpm.run",
        "-m",
        f"hydra/launcher={launcher}",
        "experiment=tiny",
        *overrides,
        f"hydra.sweep.dir={sweep}",
    )


def assert_named_runs(sweep, names: list[str]) -> None:
    """Each run is a folder named by the keys the sweep varies (whichever process ran it),
    with its own readable event files."""
    for name in names:
        run = sweep / name
        summary = json.loads((run / "summary.json").read_text())
        acc = events(run)
        assert acc.Scalars("train/loss")[-1].step == summary["steps"] == 4


@pytest.mark.slow
def test_joblib_runs_in_parallel_and_reports_failures(tmp_path):
    proc = sweep_runs(tmp_path, "joblib", "schedule=linear,cosine", "model.dim=8,0")
    assert proc.returncode == 1, proc.stderr[-2000:]  # the two dim=0 runs fail, the sweep ends
    assert "2 run(s) of the sweep failed" in proc.stderr
    good = [f"model.dim=8,schedule={s}" for s in ("cosine", "linear")]
    assert_named_runs(tmp_path, good)
    table = cli("-m", "ddpm.compare", str(tmp_path))
    assert table.returncode == 0 and (tmp_path / "compare.md").read_text().count("failed") == 2


@pytest.mark.slow
def test_submitit_local_runs_each_job_separately(tmp_path):
    proc = sweep_runs(tmp_path, "submitit_local", "schedule=linear,cosine")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert_named_runs(tmp_path, ["schedule=cosine", "schedule=linear"])
    jobs = [p for p in (tmp_path / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2  # one submitit job (a process of its own) per run


def launcher_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra.launcher


def test_shipped_launcher_configs_compose():
    slurm = launcher_config("hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu")
    assert slurm.gpus_per_node == 1 and slurm.partition == "gpu" and slurm.timeout_min == 240
    assert slurm._target_.endswith("SlurmLauncher")
    assert launcher_config("hydra/launcher=joblib").n_jobs == 2
    with pytest.raises(ConfigCompositionException):  # typos fail against the plugin's schema
        launcher_config("hydra/launcher=joblib", "hydra.launcher.n_job=3")


def test_sweep_metric_is_checked_before_training():
    assert resolve(compose_config()).top.sweep_metric == "final_loss"
    assert resolve(compose_config("hparams_search=optuna_fd")).top.sweep_metric == "fd"
    with pytest.raises(ConfigError, match="final_loss, images_per_s, fd"):
        resolve(compose_config("sweep_metric=fid"))
    with pytest.raises(ConfigError, match="trainer.bpd_n > 0"):
        resolve(compose_config("sweep_metric=bpd"))


@pytest.mark.slow
def test_optuna_search_minimises_fd(tmp_path):
    """Three trials of the shipped search on the tiny model; ~2 min here."""
    env = {**os.environ, "DDPM_CACHE": str(tmp_path / "cache")}
    fit = ["-m", "ddpm.fit_features", "dataset=fashion_mnist", "--epochs", "1"]
    proc = cli(*fit, "--limit", "6000", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sweep = tmp_path / "search"
    proc = cli(
        "-m",
        "ddpm.run",
        "hparams_search=optuna_fd",
        "experiment=tiny",
        "hydra.sweeper.n_trials=3",
        "trainer.eval_n=16",
        f"hydra.sweep.dir={sweep}",
        env=env,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    fds = [json.loads(p.read_text())["hparam/fd"] for p in sweep.glob("*/summary.json")]
    assert len(fds) == 3 and all(math.isfinite(v) for v in fds)
    assert results["best_value"] == pytest.approx(min(fds))
    assert set(results["best_params"]) == {"trainer.lr", "schedule", "block"}
