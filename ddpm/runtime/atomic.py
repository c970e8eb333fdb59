"""Files that a crash cannot tear: written beside their target, synced, renamed into place."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """`write(tmp)` to a hidden sibling with the same suffix, fsync it, rename it to `path`.

    A SIGKILL or power cut leaves the previous file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # same suffix: PIL, MindSpore
    write(tmp)
    fsync(tmp)
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
