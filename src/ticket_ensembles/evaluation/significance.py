"""Student's t-test of one method's ensemble scores against another's (the paper's test).

The samples are the scores of every evaluated k-subset. Subsets share members, so they
are not independent and the p-values are optimistic; the paper notes the same caveat.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import ttest_ind


def student_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of Student's equal-variance t-test; NaN when either side is too small or constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return float("nan"), float("nan")
    result = ttest_ind(a, b, equal_var=True)
    return float(result.statistic), float(result.pvalue)


def significantly_better(a: np.ndarray, b: np.ndarray, p: float, alpha: float, lower_is_better: bool) -> bool:
    """True when a's mean beats b's in the metric's direction and p < alpha."""
    if not np.isfinite(p) or p >= alpha:
        return False
    diff = float(np.nanmean(a) - np.nanmean(b))
    return diff < 0 if lower_is_better else diff > 0
