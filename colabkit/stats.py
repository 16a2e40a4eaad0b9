"""The statistics behind "does CBAM (or ASPP) help?": an exact McNemar test on paired
predictions, a paired bootstrap interval over test images, and a Welch t interval over
seeds. Pure Python and NumPy: no SciPy needed at run time.

McNemar, "Note on the sampling error of the difference between correlated proportions",
Psychometrika 1947; Dietterich, "Approximate statistical tests for comparing supervised
classification learning algorithms", Neural Computation 1998 (why McNemar for one split).
"""
from __future__ import annotations

import math

import numpy as np

# two-sided 95% quantiles of Student's t by degrees of freedom (1-30); 1.96 beyond
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: float) -> float:
    """Student's t quantile for a two-sided 95% interval; fractional df rounded down
    (a slightly wider, conservative interval)."""
    k = max(1, math.floor(df))
    return _T975[k - 1] if k <= len(_T975) else 1.96


def mcnemar(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: ``b`` images only the first model got right,
    ``c`` only the second. Under no difference each discordant image is a fair coin."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
            for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(x - top) for x in logs)
    return min(1.0, 2 * tail)


def discordant(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(b, c): images only A classified right, images only B did."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    return int((a & ~b).sum()), int((~a & b).sum())


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of accuracy(B) - accuracy(A), in points, resampling the
    test images (the same resample for both models: they saw the same images)."""
    d = np.asarray(correct_b, float) - np.asarray(correct_a, float)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for i in range(n_boot):
        means[i] = d[rng.integers(0, len(d), len(d))].mean()
    lo, hi = np.percentile(means, [2.5, 97.5])
    return 100 * float(lo), 100 * float(hi)


def welch_interval(a: list[float], b: list[float]) -> tuple[float, float]:
    """95% interval of mean(b) - mean(a) over independent seeds (Welch's t)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        d = b.mean() - a.mean()
        return float(d), float(d)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    d, h = b.mean() - a.mean(), t975(df) * se
    return float(d - h), float(d + h)
