"""Data-parallel training: `python -m ddpm.launch --workers N -- <the usual overrides>`.

Starts MindSpore's `msrun` with N local workers, each running `python -m ddpm.run` with the
same overrides and one shared run dir. Each worker joins the cluster (ddpm.runtime.distributed),
reads its own shard of the data, draws its own timesteps and noise, and averages
gradients (DATA_PARALLEL, gradients_mean=True); rank 0 alone writes TensorBoard events,
samples and checkpoints. trainer.batch_size stays the global batch.

Several nodes: run the same command on every node with --nodes, --node-rank and
--master-addr (the node that runs rank 0), and a --run-dir on storage all nodes share.
Worker logs are in <run dir>/msrun/worker_<rank>.log.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ddpm.cli import non_negative_int, port, positive_int

MSRUN = [sys.executable, "-m", "mindspore.parallel.cluster.run"]  # the `msrun` entry point


def msrun_env() -> dict[str, str]:
    """This environment, with this interpreter first on PATH: msrun starts the `python`
    it finds there for every worker."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="python -m ddpm.launch", description=__doc__)
    p.add_argument("--workers", type=positive_int, required=True, help="workers on this node")
    p.add_argument("--nodes", type=positive_int, default=1, help="nodes taking part (default 1)")
    p.add_argument("--node-rank", type=non_negative_int, help="this node's index (multi-node)")
    p.add_argument("--master-addr", default="127.0.0.1", help="the address of node 0")
    p.add_argument("--master-port", type=port, default=8118)
    p.add_argument("--run-dir", type=Path, default=None, help="default outputs/<date>/<time>")
    p.add_argument(
        "--timeout", type=positive_int, default=600, help="seconds to wait for all workers"
    )
    p.add_argument("--dry-run", action="store_true", help="print the msrun command only")
    args, rest = p.parse_known_args(argv)
    overrides = rest[1:] if rest[:1] == ["--"] else rest
    if args.node_rank is not None and args.node_rank >= args.nodes:
        p.error(f"--node-rank {args.node_rank} must be below --nodes {args.nodes}")
    if args.run_dir is not None and args.run_dir.exists() and not args.run_dir.is_dir():
        p.error(f"--run-dir {args.run_dir} exists and is not a folder")
    if any(o in ("-m", "--multirun") for o in overrides):
        p.error("a sweep runs through Hydra's launchers (hydra/launcher=joblib, submitit_*)")
    return args, overrides


def msrun_command(args: argparse.Namespace, overrides: list[str], run_dir: Path) -> list[str]:
    """msrun with its own flags, then `python -m ddpm.run` for every worker."""
    cmd = [
        *MSRUN,
        f"--worker_num={args.workers * args.nodes}",
        f"--local_worker_num={args.workers}",
        f"--master_addr={args.master_addr}",
        f"--master_port={args.master_port}",
        f"--log_dir={run_dir / 'msrun'}",
        f"--cluster_time_out={args.timeout}",
        "--join=True",
    ]
    if args.node_rank is not None:
        cmd.append(f"--node_rank={args.node_rank}")
    return [*cmd, "python", "-m", "ddpm.run", f"hydra.run.dir={run_dir}", *overrides]


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse(argv)
    run_dir = (args.run_dir or Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S")).resolve()
    cmd = msrun_command(args, overrides, run_dir)
    print(shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    run_dir.mkdir(parents=True, exist_ok=True)
    code = subprocess.run(cmd, env=msrun_env()).returncode
    print(f"run dir: {run_dir}\nworker logs: {run_dir / 'msrun'}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
