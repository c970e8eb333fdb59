"""Atomic full-state checkpoints: write to a temporary file, then rename into place.

A checkpoint is the TrainStep cell's Parameters (network, EMA, optimiser moments and step)
plus a JSON `meta` string (global step, RNG state, config fingerprint). The folder keeps
the last K `step_XXXXXXXX.ckpt` files and a `latest` file naming the newest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import mindspore as ms
from mindspore import nn

from ddpm.config.errors import CheckpointError
from ddpm.config.run_folder import CHECKPOINT_GLOB, LATEST, RunFolder
from ddpm.runtime import atomic
from ddpm.runtime.atomic import atomic_write


def save(cell: nn.Cell, folder: Path, step: int, meta: dict[str, Any], keep: int) -> Path:
    """Write folder/step_<step>.ckpt atomically, point `latest` at it, prune to `keep` files."""
    path = folder / f"step_{step:08d}.ckpt"
    extra = {"meta": json.dumps(meta)}
    atomic_write(path, lambda tmp: ms.save_checkpoint(cell, str(tmp), append_dict=extra))
    atomic.write_text(folder / LATEST, path.name + "\n")
    for old in sorted(folder.glob(CHECKPOINT_GLOB))[:-keep] if keep > 0 else []:
        old.unlink()
    return path


def load(path: Path) -> tuple[dict[str, ms.Parameter], dict[str, Any]]:
    """Parameters and meta of one checkpoint; any failure names the file."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        params = ms.load_checkpoint(str(path))
        meta = json.loads(str(params.pop("meta")))
    except Exception as err:  # MindSpore raises ValueError/RuntimeError on bad protobuf
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {err}") from err
    return params, meta


def load_state(cell: nn.Cell, params: dict[str, ms.Parameter]) -> None:
    """Restore every training-state Parameter of `cell`.

    The learning-rate table is rebuilt from the config instead (its length follows
    trainer.steps, which a resumed run may change); the optimiser's global step indexes it.
    """
    params = {k: v for k, v in params.items() if "learning_rate" not in k}
    expected = {p.name for p in cell.get_parameters() if "learning_rate" not in p.name}
    missing = sorted(expected - set(params))
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} parameters, e.g. {missing[:3]}")
    ms.load_param_into_net(cell, params, strict_load=True)


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    """Refuse to resume into a different model; list the keys that differ."""
    diffs = sorted(_diff(saved, current))
    if diffs:
        lines = "".join(f"\n  {k}: checkpoint {a!r}, config {b!r}" for k, a, b in diffs)
        raise ResumeMismatch(f"cannot resume from {path}: the config changes the model:{lines}")


class ResumeMismatch(CheckpointError):
    """The config being resumed defines another model than the checkpoint's."""


def _diff(a: Any, b: Any, prefix: str = ""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _diff(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip("."), a, b


def resolve_resume(resume: str, run_dir: Path) -> tuple[Path, list[Path]]:
    """(run dir to continue, checkpoints to try newest first) for trainer.resume.

    `latest` continues this run dir; a run dir continues that one; a .ckpt file is loaded
    as the only candidate, into this run dir.
    """
    target = Path(resume).expanduser()
    if resume == "latest":
        return run_dir, candidates(RunFolder(run_dir).checkpoints)
    if target.is_file():
        return run_dir, [target]
    if RunFolder(target).checkpoints.is_dir():
        return target, candidates(RunFolder(target).checkpoints)
    raise CheckpointError(f"trainer.resume={resume!r}: not 'latest', a run dir or a .ckpt file")


def digest(params) -> str:
    """sha256 over the bytes of a sequence of Parameters, in order."""
    h = hashlib.sha256()
    for p in params:
        h.update(p.asnumpy().tobytes())
    return h.hexdigest()


def candidates(folder: Path) -> list[Path]:
    """Checkpoints to try for `resume=latest`, newest first (the `latest` pointer leads)."""
    found = sorted(folder.glob(CHECKPOINT_GLOB), reverse=True)
    pointer = folder / LATEST
    if pointer.is_file():
        named = folder / pointer.read_text().strip()
        found = [named] + [p for p in found if p != named]
    return found
