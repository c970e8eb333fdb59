"""Seed statistics for comparisons: t intervals and Welch's t-test (numpy and scipy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05  # a difference is supported when Welch's two-sided p < ALPHA


@dataclass(frozen=True)
class Estimate:
    """The mean of n seeds and the half-width of its 95% t interval (NaN when n < 2)."""

    mean: float
    half_width: float
    n: int

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.half_width)


def estimate(values: list[float]) -> Estimate:
    """mean +- t_{0.975, n-1} s / sqrt(n), over the finite values."""
    x = np.asarray([v for v in values if math.isfinite(v)], np.float64)
    if len(x) == 0:
        return Estimate(math.nan, math.nan, 0)
    if len(x) == 1:
        return Estimate(float(x[0]), math.nan, 1)
    t = stats.t.ppf(0.5 + CONFIDENCE / 2, len(x) - 1)
    return Estimate(float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(len(x))), len(x))


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of Welch's t-test (unequal variances); NaN below 2 finite values a side,
    or when both sides are constant."""
    a = [v for v in a if math.isfinite(v)]
    b = [v for v in b if math.isfinite(v)]
    if len(a) < 2 or len(b) < 2 or (np.var(a) == 0 and np.var(b) == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)
