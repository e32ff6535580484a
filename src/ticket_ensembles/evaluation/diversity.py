"""Pairwise diversity of ensemble members (Kuncheva & Whitaker 2003; DESlib's definitions).

For two members over N examples: N11 both right, N00 both wrong, N10 only the first
right, N01 only the second right. The measure functions take these counts (scalars or
arrays of pairs) and say explicitly what an undefined case gives instead of dividing by
zero. ``pairwise_measures`` averages them over the pairs i < j of one group.
"""
from __future__ import annotations

import numpy as np

from .metrics import softmax

ORACLE_MEASURES = ("q_statistic", "ratio_errors", "negative_double_fault", "disagreement", "correlation")


def oracle_counts(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N11, N10, N01, N00) as [M, M] matrices from a bool matrix correct[member, example]."""
    right = correct.astype(np.int64)
    wrong = 1 - right
    return right @ right.T, right @ wrong.T, wrong @ right.T, wrong @ wrong.T


def q_statistic(n11, n10, n01, n00):
    """Yule's Q = (N11 N00 - N01 N10) / (N11 N00 + N01 N10); NaN when the denominator is 0."""
    num = np.asarray(n11 * n00 - n01 * n10, dtype=np.float64)
    den = np.asarray(n11 * n00 + n01 * n10, dtype=np.float64)
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den != 0)


def ratio_errors(n11, n10, n01, n00):
    """Aksela's (N01 + N10) / N00: different errors per shared error.

    N00 = 0 is handled explicitly: +inf when the pair makes different errors but never the
    same one (as diverse as it gets; DESlib returns the largest float), NaN when the pair
    makes no error at all.
    """
    diff = np.asarray(n01 + n10, dtype=np.float64)
    n00 = np.asarray(n00, dtype=np.float64)
    undefined = np.where(diff > 0, np.inf, np.nan)
    return np.divide(diff, n00, out=np.asarray(undefined, dtype=np.float64), where=n00 > 0)


def negative_double_fault(n11, n10, n01, n00):
    """-N00 / N: minus the share of examples both members get wrong."""
    return -np.asarray(n00, dtype=np.float64) / (n11 + n10 + n01 + n00)


def disagreement(n11, n10, n01, n00):
    """(N01 + N10) / N: the share of examples exactly one member gets right."""
    return np.asarray(n01 + n10, dtype=np.float64) / (n11 + n10 + n01 + n00)


def correlation(n11, n10, n01, n00):
    """Oracle-output correlation rho; NaN when a member is always right or always wrong."""
    num = np.asarray(n11 * n00 - n01 * n10, dtype=np.float64)
    den = np.sqrt(np.asarray((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00), dtype=np.float64))
    return np.divide(num, den, out=np.full_like(num, np.nan), where=den > 0)


_MEASURES = {"q_statistic": q_statistic, "ratio_errors": ratio_errors,
             "negative_double_fault": negative_double_fault, "disagreement": disagreement,
             "correlation": correlation}


def pairwise_measures(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The five oracle measures averaged over member pairs i < j (pred: [M, N] classes).

    Undefined pairs (NaN) are left out of the mean and so are ratio-errors pairs with
    N00 = 0 (inf); ``*_undefined_pairs`` counts them. With no defined pair the mean is NaN
    (inf for ratio errors when every pair had different errors but no shared one).
    """
    counts = oracle_counts(pred == labels[None, :])
    iu = np.triu_indices(pred.shape[0], k=1)
    out: dict[str, float] = {"pairs": float(len(iu[0]))}
    for name, fn in _MEASURES.items():
        values = fn(*(c[iu] for c in counts))
        finite = np.isfinite(values)
        out[name] = float(values[finite].mean()) if finite.any() else (
            float("inf") if np.isinf(values).any() else float("nan"))
        out[f"{name}_undefined_pairs"] = float((~finite).sum())
    return out


def prediction_disagreement(pred: np.ndarray) -> float:
    """FreeTickets' disagreement: share of examples two members predict different classes, over pairs."""
    iu = np.triu_indices(pred.shape[0], k=1)
    if not len(iu[0]):
        return float("nan")
    return float((pred[iu[0]] != pred[iu[1]]).mean())


def mean_pairwise_kl(logits: np.ndarray) -> float:
    """Mean KL(p_i || p_j) over ordered member pairs i != j and examples (FreeTickets' KL)."""
    m = logits.shape[0]
    if m < 2:
        return float("nan")
    z = logits - logits.max(-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
    p = softmax(logits)
    # sum_{i,j} KL(p_i||p_j) = M * sum_i sum p_i log p_i - sum_{i,j} sum p_i log p_j
    self_term = (p * log_p).sum(-1).sum(0)  # [N]
    cross = (p.sum(0) * log_p.sum(0)).sum(-1)  # [N]
    total = m * self_term - cross
    return float(total.mean() / (m * (m - 1)))


def score_correlation(scores: np.ndarray) -> float:
    """Regression: mean Pearson correlation between two members' scores, over pairs."""
    iu = np.triu_indices(scores.shape[0], k=1)
    if not len(iu[0]):
        return float("nan")
    return float(np.corrcoef(scores)[iu].mean())


def group_diversity(logits: np.ndarray, labels: np.ndarray, regression: bool) -> dict[str, float]:
    """All diversity numbers of one group of members (logits [M, N, C], regression scores [M, N])."""
    if regression:
        return {"pairs": float(logits.shape[0] * (logits.shape[0] - 1) // 2),
                "score_correlation": score_correlation(logits)}
    pred = logits.argmax(-1)
    out = pairwise_measures(pred, labels)
    out["prediction_disagreement"] = prediction_disagreement(pred)
    out["kl"] = mean_pairwise_kl(logits)
    return out
