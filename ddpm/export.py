"""Export a run's EMA denoiser and sampler as MindIR, for sampling without this package:

    python -m ddpm.export <run dir> [--batch 16] [--out <run>/export] [--sampler heun ...]

Writes step<k>.mindir (the compiled reverse steps, guidance inside, for batches of --batch)
and plan.npz (the sampler's coefficient table; ddpm.sampling.export lists its arrays). The
README's "Export" section has the plain-MindSpore loop that samples from them. The graphs
use MindSpore's built-in operators: the fused CPU kernels are compiled for this machine
and do not travel.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
from ddpm.api import load_run
from ddpm.cli import (
    add_sampler_flags,
    existing_file,
    positive_int,
    run_dir,
    run_tool,
    sampler_flags,
)
from ddpm.config.run_folder import RunFolder
from ddpm.sampling.export import export_sampler
from ddpm.sampling.loading import latest_checkpoint, load_model


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m ddpm.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_dir", type=run_dir, help="a training run's output folder")
    p.add_argument("--checkpoint", type=existing_file, help="default: the run's latest")
    p.add_argument("--batch", type=positive_int, default=16, help="the exported batch size")
    p.add_argument("--out", type=Path, help="output folder (default: <run>/export)")
    add_sampler_flags(p)
    return p.parse_args(argv)


def export(args: argparse.Namespace) -> int:
    run = load_run(args.run_dir, args.checkpoint)
    sampler = run.sampler(args.sampler, **sampler_flags(args))
    out = args.out or RunFolder(args.run_dir).root / "export"
    model = load_model(run.config, args.checkpoint or latest_checkpoint(run.path), portable=True)
    written = export_sampler(model, sampler, (args.batch, *run.image_shape), out)
    print(f"exported step {model.step} ({sampler.name}, batch {args.batch}) -> {out}:")
    print("\n".join(f"  {p.name}" for p in written))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
