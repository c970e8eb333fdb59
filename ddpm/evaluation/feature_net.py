"""A small MindSpore classifier whose penultimate layer is the feature space for FD.

Fitted once per dataset by `python -m ddpm.fit_features dataset=<name>` and
cached under $DDPM_CACHE/features/<name>/ (default ~/.cache/ddpm/features/<name>/):
classifier.ckpt, stats.npz (test-set feature mean, covariance, features) and meta.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from ddpm.data.formats import DatasetError
from ddpm.data.sources import cache_dir

FEATURE_DIM = 128


class FeatureNet(nn.Cell):
    """conv-pool x2 -> Dense(128) features -> Dense(classes). Input [B, C, H, W] in [-1, 1]."""

    def __init__(self, channels: int, image_size: int, num_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.SequentialCell(
            nn.Conv2d(channels, 32, 3, pad_mode="pad", padding=1, has_bias=True),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 3, pad_mode="pad", padding=1, has_bias=True),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Dense(64 * (image_size // 4) ** 2, FEATURE_DIM),
            nn.ReLU(),
        )
        self.head = nn.Dense(FEATURE_DIM, num_classes)

    def construct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)  # [B, 128]
        return features, ops.softmax(self.head(features), axis=-1)


class _Logits(nn.Cell):
    def __init__(self, net: FeatureNet) -> None:
        super().__init__()
        self.net = net

    def construct(self, x: Tensor) -> Tensor:
        return self.net.head(self.net.body(x))


def to_model_space(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, C, H, W] in [-1, 1]."""
    return (images.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)


def fit(
    net: FeatureNet,
    images: np.ndarray,
    labels: np.ndarray,
    epochs: int,
    seed: int,
    batch_size: int = 128,
    lr: float = 1e-3,
) -> None:
    """Adam on cross-entropy; images [N, C, H, W] in [-1, 1]."""
    loss = nn.WithLossCell(
        _Logits(net), nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    )
    step = nn.TrainOneStepCell(loss, nn.Adam(net.trainable_params(), learning_rate=lr))
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(len(images))
        for i in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[i : i + batch_size]
            step(Tensor(images[idx]), Tensor(labels[idx].astype(np.int32)))


def predict(net: FeatureNet, images: np.ndarray, batch_size: int = 500):
    """Features [N, 128] and class probabilities [N, K] of images [N, C, H, W] in [-1, 1]."""
    feats, probs = [], []
    for i in range(0, len(images), batch_size):
        f, p = net(Tensor(images[i : i + batch_size]))
        feats.append(f.asnumpy())
        probs.append(p.asnumpy())
    return np.concatenate(feats), np.concatenate(probs)


@dataclass
class FeatureSpace:
    """A fitted classifier and the test set's features in it."""

    net: FeatureNet
    test_features: np.ndarray  # [N, 128]
    mu: np.ndarray
    sigma: np.ndarray
    accuracy: float


def feature_dir(dataset: str) -> Path:
    return cache_dir("features") / dataset


def save(space: FeatureSpace, folder: Path, meta: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ms.save_checkpoint(space.net, str(folder / "classifier.ckpt"))
    np.savez(
        folder / "stats.npz", mu=space.mu, sigma=space.sigma, test_features=space.test_features
    )
    (folder / "meta.json").write_text(json.dumps({**meta, "accuracy": space.accuracy}, indent=2))


def load(dataset: str, channels: int, image_size: int) -> FeatureSpace:
    """The cached feature space of `dataset`; says how to fit it when missing."""
    folder = feature_dir(dataset)
    if not (folder / "meta.json").is_file():
        raise DatasetError(
            f"no feature network for {dataset!r} in {folder}; fit it once with "
            f"`python -m ddpm.fit_features dataset={dataset}`"
        )
    net = FeatureNet(channels, image_size)
    ms.load_param_into_net(net, ms.load_checkpoint(str(folder / "classifier.ckpt")))
    stats = np.load(folder / "stats.npz")
    meta = json.loads((folder / "meta.json").read_text())
    return FeatureSpace(net, stats["test_features"], stats["mu"], stats["sigma"], meta["accuracy"])
