"""Data-parallel runtime: which worker this process is, under MindSpore's `msrun`.

`msrun` (see ddpm.launch) starts one process per worker (MS_ROLE=MS_WORKER) and one
scheduler (MS_ROLE=MS_SCHED), all running the same command. Each joins the cluster here:
for the scheduler `init()` serves the cluster and exits with it; for a worker it returns,
and MindSpore's DATA_PARALLEL mode then averages gradients (`gradients_mean=True`). A
process started any other way is the only worker, rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import mindspore as ms

from ddpm.config.registry import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes TensorBoard events, sample grids, checkpoints and summaries."""
        return self.rank == 0

    def local_batch(self, batch_size: int) -> int:
        """Each worker's share of the global trainer.batch_size."""
        if batch_size % self.size:
            raise ConfigError(
                f"trainer.batch_size={batch_size} must divide evenly over {self.size} workers"
            )
        return batch_size // self.size


def launched_by_msrun() -> bool:
    return os.environ.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED")


def init_world() -> World:
    """Join the msrun cluster (after ms.set_device) and enable data parallelism."""
    if not launched_by_msrun():
        return World()
    from mindspore.communication import get_group_size, get_rank, init

    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True)
    return World(get_rank(), get_group_size())


def data_parallel() -> bool:
    """True inside a worker that init_world() put into DATA_PARALLEL mode."""
    return ms.get_auto_parallel_context("parallel_mode") == ms.ParallelMode.DATA_PARALLEL
