"""The training input pipeline, deterministic and resumable.

Batch k of a run is a pure function of (seed, k): epoch e = k // steps_per_epoch is a
permutation drawn from (seed, e), and each item's horizontal flip from (seed, e, index).
So a run resumed at step k sees exactly the batches an uninterrupted run would.

The images are in memory, so batches are gathered with numpy in the calling thread: a
mindspore.dataset pipeline (GeneratorDataset, Rescale, HWC2CHW, batch) gives the same
arrays bit for bit, but costs ~18x the CPU time per batch and keeps its worker threads
waking beside the train step's (experiments/cpu_speed.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageData:
    """uint8 images [N, H, W, C], their class labels [N] if loaded, the augmentation settings."""

    images: np.ndarray
    random_flip: bool
    labels: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one network input."""
        _, h, w, c = self.images.shape
        return c, h, w


class _ImageStream:
    """Endless item stream: per-epoch permutations of (seed, e) and per-item flips of (seed, e, i).

    It starts at item `start` of the stream and keeps only this shard's share of each epoch.
    """

    def __init__(
        self, data: ImageData, per_epoch: int, seed: int, start: int, shard: tuple[int, int]
    ):
        self.images, self.flip = data.images, data.random_flip
        self.labels = np.zeros(len(data.images), np.int32) if data.labels is None else data.labels
        self.per_epoch, self.seed, self.start = per_epoch, seed, start
        self.shard_id, self.num_shards = shard

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch, offset = divmod(self.start, self.per_epoch)
        while True:
            for i in self._epoch_order(epoch)[offset:]:
                yield self._item(epoch, int(i)), np.int32(self.labels[i])
            epoch, offset = epoch + 1, 0

    def _epoch_order(self, epoch: int) -> np.ndarray:
        perm = np.random.default_rng((self.seed, epoch)).permutation(len(self.images))
        return perm[self.shard_id :: self.num_shards][: self.per_epoch]

    def _item(self, epoch: int, i: int) -> np.ndarray:
        image = self.images[i]  # [H, W, C]
        if self.flip and np.random.default_rng((self.seed, epoch, i)).random() < 0.5:
            image = image[:, ::-1]
        return np.ascontiguousarray(image)


def steps_per_epoch(n: int, batch_size: int, num_shards: int = 1) -> int:
    steps = (n // num_shards) // batch_size
    if steps == 0:
        raise ValueError(
            f"{n} images over {num_shards} shard(s) do not fill one batch of {batch_size}"
        )
    return steps


def batch_stream(
    data: ImageData,
    batch_size: int,
    seed: int,
    start_step: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless batches: float32 images [B, C, H, W] in [-1, 1] and int32 labels [B] (zeros
    for data without labels), starting at global step start_step."""
    n = len(data.images)
    per_epoch = steps_per_epoch(n, batch_size, shard[1]) * batch_size
    items = iter(_ImageStream(data, per_epoch, seed, start_step * batch_size, shard))
    while True:
        chunk = [next(items) for _ in range(batch_size)]
        images = to_unit_range(np.stack([image for image, _ in chunk]))
        yield images.transpose(0, 3, 1, 2).copy(), np.array([y for _, y in chunk], np.int32)


def to_unit_range(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1] as x / 127.5 - 1, rounded once from the exact value
    (float64 holds uint8 times a float32 exactly), as mindspore.dataset's Rescale does."""
    scale = np.float64(np.float32(1 / 127.5))
    return (images.astype(np.float64) * scale - 1.0).astype(np.float32)
