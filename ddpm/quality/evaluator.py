"""Metrics of a network's samples against the test set, in the cached feature space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddpm.quality.feature_net import FeatureSpace, predict
from ddpm.quality.scores import (
    class_histogram,
    fd_infinity,
    feature_stats,
    frechet_distance,
    inception_score,
    precision_recall,
)
from ddpm.reverse_step import ReverseStep, p_sample_loop
from ddpm.samplers import SamplerPlan


@dataclass
class Evaluator:
    space: FeatureSpace
    k: int = 3  # neighbours for precision/recall

    def metrics(self, samples: np.ndarray) -> dict[str, float | list[float]]:
        """FD, IS, precision, recall and class histogram of samples [N, C, H, W] in [-1, 1]."""
        features, probs = predict(self.space.net, samples.astype(np.float32))
        histogram = class_histogram(probs)
        mu, sigma = feature_stats(features)
        reals = self.space.test_features[: max(len(features), 2 * self.k)]
        precision, recall = precision_recall(reals, features, self.k)
        return {
            "fd": frechet_distance(mu, sigma, self.space.mu, self.space.sigma),
            "fd_inf": fd_infinity(features, self.space.mu, self.space.sigma),
            "is": inception_score(probs),
            "precision": precision,
            "recall": recall,
            "class_min": float(histogram.min()),
            "class_max": float(histogram.max()),
            "class_histogram": histogram.round(4).tolist(),
            "n": len(samples),
        }


def draw(
    step: ReverseStep, plan: SamplerPlan, n: int, shape: tuple[int, int, int], batch: int, seed: int
) -> np.ndarray:
    """n samples [n, C, H, W] in fixed-size batches (one compiled shape), seeds seed, seed+1..."""
    chunks = [
        p_sample_loop(step, plan, (batch, *shape), seed=seed + i) for i in range(-(-n // batch))
    ]
    return np.concatenate(chunks)[:n]
