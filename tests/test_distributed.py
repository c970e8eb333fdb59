"""Data-parallel training with two real msrun workers on CPU, and the launcher's command."""

import json
import socket
import subprocess
from pathlib import Path

import pytest

from ddpm.config.registry import ConfigError
from ddpm.launch import MSRUN, msrun_env
from ddpm.launch import main as launch_main
from ddpm.runtime.distributed import World
from tests.test_cli import cli, events

WORKERS = Path(__file__).resolve().parent / "workers"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    port = str(free_port())
    args = ["--workers", "2", "--master-port", port, "--run-dir", str(run_dir), "--timeout", "300"]
    return cli("-m", "ddpm.launch", *args, "--", "experiment=tiny", *overrides)


def digests(run_dir: Path) -> list[tuple[str, str]]:
    records = [json.loads(p.read_text()) for p in sorted((run_dir / "ranks").glob("*.json"))]
    assert [r["rank"] for r in records] == [0, 1]
    return [(r["weights_sha256"], r["ema_sha256"]) for r in records]


def test_averaged_gradient_is_the_mean_of_the_ranks_gradients(tmp_path):
    proc = cli(
        *MSRUN[1:],  # cli() supplies the interpreter
        "--worker_num=2",
        "--local_worker_num=2",
        f"--master_port={free_port()}",
        f"--log_dir={tmp_path / 'logs'}",
        "--join=True",
        str(WORKERS / "gradients.py"),
        str(tmp_path),
        env=msrun_env(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    for rank in (0, 1):
        record = json.loads((tmp_path / f"gradients_{rank}.json").read_text())
        assert record["size"] == 2
        assert min(record["rank_gap"]) > 1e-4  # the two shards' gradients really differ
        assert record["max_diff"] < 1e-6  # and each rank applies exactly their mean
        assert record["accumulated_max_diff"] < 1e-6  # also over accumulated micro-batches


@pytest.mark.slow
def test_two_workers_stay_identical_write_once_and_resume_exactly(tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    proc = launch(full, "trainer.steps=6", "trainer.checkpoint_every=3")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (weights_0, ema_0), (weights_1, ema_1) = digests(full)
    assert weights_0 == weights_1 and ema_0 == ema_1
    # Rank 0 alone wrote the events (a file before each of its 2 checkpoints, and one
    # after), checkpoints and summary; both workers trained.
    assert len(list(full.glob("events.out.tfevents.*"))) == 3
    assert [s.step for s in events(full).Scalars("train/loss")] == [2, 4, 6]
    assert sorted(p.name for p in (full / "checkpoints").glob("*.ckpt")) == [
        "step_00000003.ckpt",
        "step_00000006.ckpt",
    ]
    logs = {p.name: p.read_text() for p in (full / "msrun").glob("worker_*.log")}
    assert "data parallel: worker 1 of 2" in logs["worker_1.log"]
    meta = json.loads((full / "summary.json").read_text())
    assert meta["steps"] == 6
    # Resuming the step-3 checkpoint on two workers reproduces the uninterrupted run.
    ckpt = full / "checkpoints" / "step_00000003.ckpt"
    proc = launch(resumed, "trainer.steps=6", f"trainer.resume={ckpt}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert digests(resumed) == digests(full)


def test_launcher_builds_msrun_commands(capsys, tmp_path):
    args = ["--workers", "4", "--nodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.5"]
    assert (
        launch_main([*args, "--run-dir", str(tmp_path), "--dry-run", "--", "block=convnext"]) == 0
    )
    cmd = capsys.readouterr().out
    for flag in ("--worker_num=8", "--local_worker_num=4", "--node_rank=1", "10.0.0.5"):
        assert flag in cmd
    assert cmd.strip().endswith(f"python -m ddpm.run hydra.run.dir={tmp_path} block=convnext")
    with pytest.raises(SystemExit):
        launch_main(["--workers", "2", "--", "-m", "schedule=linear,cosine"])
    assert "Hydra's launchers" in capsys.readouterr().err


def test_global_batch_is_split_evenly():
    assert World(1, 2).local_batch(64) == 32 and World().local_batch(7) == 7
    assert not World(1, 2).is_main
    with pytest.raises(ConfigError, match="divide evenly over 2 workers"):
        World(0, 2).local_batch(7)
