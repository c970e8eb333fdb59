"""Metrics of a network's samples against the test set, in the cached feature space."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ddpm.diffusion.conditioning import balanced_labels
from ddpm.diffusion.samplers import SamplerPlan
from ddpm.evaluation.feature_net import FeatureSpace, predict
from ddpm.evaluation.scores import (
    class_histogram,
    fd_infinity,
    feature_stats,
    frechet_distance,
    inception_score,
    precision_recall,
)
from ddpm.sampling.reverse_step import ReverseStep, p_sample_loop


@dataclass
class Evaluator:
    space: FeatureSpace
    k: int = 3  # neighbours for precision/recall
    test_labels: np.ndarray | None = None  # the test set's classes, for per-class FD

    def metrics(
        self, samples: np.ndarray, labels: np.ndarray | None = None
    ) -> dict[str, float | list[float]]:
        """FD, IS, precision, recall and class histogram of samples [N, C, H, W] in [-1, 1];
        for samples drawn for classes `labels` [N], also the conditional metrics."""
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
            **(self.conditional(features, probs, labels) if labels is not None else {}),
        }

    def score(
        self,
        step: ReverseStep,
        plan: SamplerPlan,
        n: int,
        shape: tuple[int, int, int],
        batch: int,
        seed: int,
        num_classes: int = 0,
    ) -> dict[str, float | list[float]]:
        """The metrics of n samples drawn as `draw` does; a conditional model (num_classes
        K > 0) draws every class in turn."""
        labels = balanced_labels(n, num_classes) if num_classes else None
        return self.metrics(draw(step, plan, n, shape, batch, seed, labels), labels)

    def conditional(
        self, features: np.ndarray, probs: np.ndarray, labels: np.ndarray
    ) -> dict[str, float | list[float]]:
        """cond_accuracy: the share of samples the classifier assigns to the class they were
        drawn for; fd_class: the mean over classes of FD between a class's samples and its
        test images (each on N/K samples, so biased upwards against the pooled FD; NaN where no
        class has two samples)."""
        out: dict[str, float | list[float]] = {
            "cond_accuracy": float(np.mean(np.argmax(probs, axis=1) == labels))
        }
        if self.test_labels is not None:
            real = self.space.test_features
            per_class = [
                frechet_distance(
                    *feature_stats(features[labels == c]),
                    *feature_stats(real[self.test_labels[: len(real)] == c]),
                )
                for c in np.unique(labels)
                if np.sum(labels == c) > 1
            ]
            out["fd_class"] = float(np.mean(per_class)) if per_class else float("nan")
            out["fd_per_class"] = np.round(per_class, 2).tolist()
        return out


def draw(
    step: ReverseStep,
    plan: SamplerPlan,
    n: int,
    shape: tuple[int, int, int],
    batch: int,
    seed: int,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """n samples [n, C, H, W] (of classes labels [n], if given) in fixed-size batches (one
    compiled shape), seeds seed, seed+1..."""
    chunks = -(-n // batch)
    if labels is not None:  # the last batch is padded to full size
        labels = np.resize(labels, chunks * batch)
    samples = [
        p_sample_loop(
            step,
            plan,
            (batch, *shape),
            seed=seed + i,
            labels=None if labels is None else labels[i * batch : (i + 1) * batch],
        )
        for i in range(chunks)
    ]
    return np.concatenate(samples)[:n]
