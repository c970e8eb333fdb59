"""Sample-quality metrics on classifier features and probabilities (numpy, float64)."""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of features [N, D]."""
    features = np.asarray(features, np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """Heusel et al. 2017: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    tr((S1 S2)^(1/2)) = sum sqrt(eig(S1^(1/2) S2 S1^(1/2))), a symmetric PSD matrix, so
    no general matrix square root is needed.
    """
    vals, vecs = np.linalg.eigh(sigma1)
    root1 = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T  # S1^(1/2)
    inner = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    tr_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt)


def fd_infinity(
    features: np.ndarray,
    mu_ref: np.ndarray,
    sigma_ref: np.ndarray,
    num_sizes: int = 15,
    seed: int = 0,
) -> float:
    """FD extrapolated to infinitely many samples (Chong & Forsyth 2020, sec. 3).

    FD's bias falls as 1/N, so FD at N = FD_inf + k / N. Fit that line over random subsets
    of num_sizes sizes from N/5 (at least twice the feature dimension, for a full-rank
    covariance) to N, and return its intercept; NaN when N is too small for three sizes.
    """
    n, dim = features.shape
    smallest = max(n // 5, 2 * dim)
    sizes = np.unique(np.linspace(smallest, n, num_sizes).astype(int))
    if smallest >= n or len(sizes) < 3:
        return float("nan")
    rng = np.random.default_rng(seed)
    fds = []
    for size in sizes:
        subset = features[rng.choice(n, size, replace=False)]
        fds.append(frechet_distance(*feature_stats(subset), mu_ref, sigma_ref))
    _, intercept = np.polyfit(1.0 / sizes, fds, 1)
    return float(intercept)


def inception_score(probs: np.ndarray, eps: float = 1e-12) -> float:
    """Salimans et al. 2016: exp(E_x KL(p(y|x) || p(y))), with our classifier's p(y|x)."""
    probs = np.asarray(probs, np.float64)
    marginal = probs.mean(axis=0, keepdims=True)
    kl = (probs * (np.log(probs + eps) - np.log(marginal + eps))).sum(axis=1)
    return float(np.exp(kl.mean()))


def class_histogram(probs: np.ndarray) -> np.ndarray:
    """Fraction of samples assigned to each class [K]; a spike shows mode collapse."""
    counts = np.bincount(np.argmax(probs, axis=1), minlength=probs.shape[1])
    return counts / counts.sum()


def _kth_neighbour_radii(x: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    radii = np.empty(len(x))
    for i in range(0, len(x), chunk):
        d = _sq_dists(x[i : i + chunk], x)
        radii[i : i + chunk] = np.sqrt(np.partition(d, k, axis=1)[:, k])  # k-th, self is 0th
    return radii


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
    return np.clip(d, 0, None)


def _coverage(queries: np.ndarray, refs: np.ndarray, radii: np.ndarray, chunk=1024) -> float:
    """Fraction of queries inside at least one reference ball of the given radii."""
    inside = 0
    for i in range(0, len(queries), chunk):
        d = np.sqrt(_sq_dists(queries[i : i + chunk], refs))
        inside += int(np.any(d <= radii[None, :], axis=1).sum())
    return inside / len(queries)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al. 2019: k-NN manifolds of each set; precision = fakes on the real
    manifold, recall = reals on the fake manifold."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    precision = _coverage(fake, real, _kth_neighbour_radii(real, k))
    recall = _coverage(real, fake, _kth_neighbour_radii(fake, k))
    return precision, recall
