"""TensorBoard logging through tensorboardX; the training loop is its only caller."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np


def _without_torch():
    """tensorboardX's writer imports torch, when installed, for its Tensor type alone; that
    loads torch's own OpenMP and MKL runtimes beside MindSpore's (~1 s and ~300 MB). A None
    in sys.modules makes the import fail fast; a torch the process already has stays."""
    if "torch" in sys.modules:
        import tensorboardX

        return tensorboardX
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        import tensorboardX
    finally:
        del sys.modules["torch"]
    return tensorboardX


_tensorboardx = _without_torch()
SummaryWriter = _tensorboardx.SummaryWriter
hparams_summaries = _tensorboardx.summary.hparams

HParamValue = bool | int | float | str


class TensorBoardLogger:
    """Writes one run's event files into `logdir`, so a sweep folder shows every run by name.

    tensorboardX writes events from a background queue, and its flush() does not drain that
    queue; `commit()` does, by closing the file, so what it returns after is on disk.
    """

    def __init__(self, logdir: Path, purge_step: int | None = None) -> None:
        self.logdir = logdir
        # purge_step drops earlier events at or after it: a resumed run re-writes those steps.
        self.writer = self._open(purge_step)
        self._hparams: tuple[dict[str, HParamValue], list[str]] | None = None

    def _open(self, purge_step: int | None = None) -> SummaryWriter:
        # A nanosecond suffix keeps file names unique and in write order, which TensorBoard
        # reads them in (its purge on resume depends on that order).
        suffix = f".{time.time_ns():020d}"
        return SummaryWriter(
            logdir=str(self.logdir), purge_step=purge_step, flush_secs=30, filename_suffix=suffix
        )

    def commit(self) -> None:
        """Put every event logged so far on disk; later events go to a new file."""
        self.writer.close()
        self.writer = self._open()

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, float(value), step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """[H, W, C] uint8 image."""
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def hparams_start(self, hparams: dict[str, HParamValue], metric_tags: list[str]) -> None:
        """Declare the run's hparams and metric tags now, so a crashed run still lists them."""
        exp, ssi, _ = hparams_summaries(hparams, {tag: 0.0 for tag in metric_tags})
        self.writer.file_writer.add_summary(exp)
        self.writer.file_writer.add_summary(ssi)
        self._hparams = (hparams, metric_tags)

    def hparams_end(self, metrics: dict[str, float], step: int) -> None:
        """Write the final metrics as scalars under the declared tags; close the session."""
        self.scalars(metrics, step)
        if self._hparams is not None:
            _, _, sei = hparams_summaries(self._hparams[0], metrics)
            self.writer.file_writer.add_summary(sei)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class NullLogger:
    """The logger of a data-parallel worker other than rank 0: it writes nothing."""

    def scalars(self, values: dict[str, float], step: int) -> None: ...

    def image(self, tag: str, image: np.ndarray, step: int) -> None: ...

    def text(self, tag: str, text: str, step: int = 0) -> None: ...

    def hparams_start(self, hparams: dict[str, HParamValue], metric_tags: list[str]) -> None: ...

    def hparams_end(self, metrics: dict[str, float], step: int) -> None: ...

    def flush(self) -> None: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...
