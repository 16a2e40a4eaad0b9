"""The statistics behind "does CBAM (or ASPP) help?": an exact McNemar test on paired
predictions, a paired bootstrap interval over test images, and a Welch t interval over
seeds, on SciPy (which Colab preinstalls).

McNemar, "Note on the sampling error of the difference between correlated proportions",
Psychometrika 1947; Dietterich, "Approximate statistical tests for comparing supervised
classification learning algorithms", Neural Computation 1998 (why McNemar for one split).
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def mcnemar(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: ``b`` images only the first model got right,
    ``c`` only the second. Under no difference each discordant image is a fair coin."""
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(b, b + c, 0.5).pvalue)


def discordant(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(b, c): images only A classified right, images only B did."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    return int((a & ~b).sum()), int((~a & b).sum())


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of accuracy(B) - accuracy(A), in points, resampling the
    test images (the same resample for both models: they saw the same images).

    Kept by hand rather than ``scipy.stats.bootstrap``: the draw is NumPy's generator
    seeded here, so the interval in a saved report is the same under every SciPy version
    (SciPy's own seeding changed in 1.15), and it is twelve lines."""
    d = np.asarray(correct_b, float) - np.asarray(correct_a, float)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for i in range(n_boot):
        means[i] = d[rng.integers(0, len(d), len(d))].mean()
    lo, hi = np.percentile(means, [2.5, 97.5])
    return 100 * float(lo), 100 * float(hi)


def welch_interval(a: list[float], b: list[float]) -> tuple[float, float]:
    """95% interval of mean(b) - mean(a) over independent seeds (Welch's t, with its
    fractional degrees of freedom). With no spread on either side (every seed of each
    scored alike) there is no interval: (NaN, NaN). A point interval there would claim a
    certainty the seeds do not give: they show only that the spread is below what the
    test set resolves (one image is a point of accuracy on 100 images)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        return float("nan"), float("nan")
    ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    return float(ci.low), float(ci.high)
