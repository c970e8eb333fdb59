"""Atomic full-state checkpoints: write to a temporary file, then rename into place.

A checkpoint is the TrainStep cell's Parameters (network, EMA, optimiser moments and step)
plus a JSON `meta` string (global step, RNG state, config fingerprint). The folder keeps
the last K `step_XXXXXXXX.ckpt` files and a `latest` file naming the newest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mindspore as ms
from mindspore import nn

CKPT_GLOB = "step_*.ckpt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or corrupt; the message names the file."""


def save(cell: nn.Cell, folder: Path, step: int, meta: dict[str, Any], keep: int) -> Path:
    """Write folder/step_<step>.ckpt atomically, point `latest` at it, prune to `keep` files."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step:08d}.ckpt"
    tmp = folder / f".{path.stem}.tmp.ckpt"  # MindSpore appends .ckpt to other names
    ms.save_checkpoint(cell, str(tmp), append_dict={"meta": json.dumps(meta)})
    _fsync(tmp)
    os.replace(tmp, path)
    _write_atomic(folder / "latest", path.name + "\n")
    for old in sorted(folder.glob(CKPT_GLOB))[:-keep] if keep > 0 else []:
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


def candidates(folder: Path) -> list[Path]:
    """Checkpoints to try for `resume=latest`, newest first (the `latest` pointer leads)."""
    found = sorted(folder.glob(CKPT_GLOB), reverse=True)
    pointer = folder / "latest"
    if pointer.is_file():
        named = folder / pointer.read_text().strip()
        found = [named] + [p for p in found if p != named]
    return found


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    _fsync(tmp)
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
