"""The training input pipeline on mindspore.dataset, deterministic and resumable.

Batch k of a run is a pure function of (seed, k): epoch e = k // steps_per_epoch is a
permutation drawn from (seed, e), and each item's horizontal flip from (seed, e, index).
So a run resumed at step k sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import mindspore.dataset as ds
import numpy as np
from mindspore.dataset import vision


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
    stream = _ImageStream(data, per_epoch, seed, start_step * batch_size, shard)
    pipe = ds.GeneratorDataset(stream, ["image", "label"], shuffle=False, num_parallel_workers=1)
    pipe = pipe.map([vision.Rescale(1 / 127.5, -1.0), vision.HWC2CHW()], input_columns="image")
    pipe = pipe.batch(batch_size, drop_remainder=True)
    yield from map(tuple, pipe.create_tuple_iterator(num_epochs=1, output_numpy=True))
