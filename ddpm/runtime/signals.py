"""Graceful stops: SIGINT/SIGTERM let the current training step finish."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager


class StopSignals:
    """`received` holds the first SIGINT/SIGTERM inside `watch()`; a second one stops the
    process at once.

    MindSpore's runtime re-installs its own SIGINT handler at every graph launch, and it
    raises SIGTERM: so Ctrl-C during training arrives here as SIGTERM. Both stop cleanly.
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def _handler(self, signum: int, _frame: object) -> None:
        if self.received is not None:  # the second signal: stop now
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.received = signum

    @contextmanager
    def watch(self) -> Iterator[StopSignals]:
        self.received = None
        previous = {s: signal.signal(s, self._handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
