"""Metrics as pure numpy functions over a leading batch of ensembles.

Every function takes arrays whose last axis is the N evaluation examples (probabilities:
[..., N, C]) and returns one value per leading index, so one call scores hundreds of
subsets at once. F1 and Matthews come from confusion counts, not from a scikit-learn call
per subset; the tests check each against scikit-learn / scipy.
"""
from __future__ import annotations

import numpy as np

# GLUE metrics are reported in percent, as GLUE and the paper do; calibration in natural units.
PERCENT = {"accuracy", "f1", "matthews_correlation", "pearson", "spearmanr"}
CALIBRATION = ("nll", "ece", "brier")
LOWER_IS_BETTER = {"nll", "ece", "brier"}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def accuracy(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (pred == labels).mean(axis=-1)


def confusion(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [..., C, C]: rows are true classes, columns predicted classes."""
    lead = pred.shape[:-1]
    flat = pred.reshape(-1, pred.shape[-1]).astype(np.int64)
    offsets = np.arange(flat.shape[0])[:, None] * num_classes * num_classes
    idx = offsets + labels.astype(np.int64)[None, :] * num_classes + flat
    counts = np.bincount(idx.ravel(), minlength=flat.shape[0] * num_classes * num_classes)
    return counts.reshape(*lead, num_classes, num_classes)


def f1_binary(conf: np.ndarray) -> np.ndarray:
    """F1 of class 1 (GLUE's MRPC/QQP F1); 0 when there is no positive at all (sklearn's zero_division=0)."""
    tp = conf[..., 1, 1].astype(np.float64)
    denom = 2 * tp + conf[..., 0, 1] + conf[..., 1, 0]
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def matthews(conf: np.ndarray) -> np.ndarray:
    """Multiclass Matthews correlation from confusion counts (Gorodkin's R_K, as sklearn); 0 if undefined."""
    conf = conf.astype(np.float64)
    true_sum, pred_sum = conf.sum(axis=-1), conf.sum(axis=-2)
    correct = np.trace(conf, axis1=-2, axis2=-1)
    total = conf.sum(axis=(-2, -1))
    cov_ytyp = correct * total - (true_sum * pred_sum).sum(-1)
    cov_ypyp = total**2 - (pred_sum**2).sum(-1)
    cov_ytyt = total**2 - (true_sum**2).sum(-1)
    denom = np.sqrt(cov_ytyt * cov_ypyp)
    return np.divide(cov_ytyp, denom, out=np.zeros_like(cov_ytyp), where=denom > 0)


def pearson(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of scores with the labels (NaN for a constant row)."""
    s = scores - scores.mean(axis=-1, keepdims=True)
    y = labels - labels.mean()
    denom = np.sqrt((s * s).sum(-1) * (y * y).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (s * y).sum(-1) / np.where(denom > 0, denom, 1.0), np.nan)


def spearman(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Spearman correlation: Pearson of the average ranks (ties share their mean rank)."""
    from scipy.stats import rankdata  # here: a training process imports this module without scipy.stats

    return pearson(rankdata(scores, axis=-1), rankdata(labels))


def nll(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean negative log-likelihood of the true class (probabilities floored at the smallest float)."""
    idx = np.broadcast_to(labels.astype(np.int64)[..., None], probs.shape[:-1] + (1,))
    p_true = np.take_along_axis(probs, idx, axis=-1)[..., 0]
    return -np.log(np.maximum(p_true, np.finfo(np.float64).tiny)).mean(axis=-1)


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> np.ndarray:
    """Expected calibration error over equal-width confidence bins (lo, hi] (Guo et al. 2017).

    ECE = sum_b (n_b / N) |accuracy_b - mean confidence_b|, confidence = the top probability.
    """
    conf = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    lead, n = conf.shape[:-1], conf.shape[-1]
    rows = bins.reshape(-1, n) + np.arange(int(np.prod(lead, dtype=np.int64)))[:, None] * n_bins
    size = rows.shape[0] * n_bins
    gap = (np.bincount(rows.ravel(), weights=conf.reshape(-1, n).ravel(), minlength=size)
           - np.bincount(rows.ravel(), weights=correct.reshape(-1, n).ravel(), minlength=size))
    return (np.abs(gap).reshape(*lead, n_bins).sum(-1)) / n


def brier(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Multi-class Brier score: mean over examples of sum_c (p_c - onehot_c)^2 (range 0..2)."""
    onehot = np.eye(probs.shape[-1])[labels.astype(np.int64)]
    return ((probs - onehot) ** 2).sum(-1).mean(-1)


def classification_scores(pred: np.ndarray, probs: np.ndarray | None, labels: np.ndarray,
                          names: tuple[str, ...], num_classes: int, ece_bins: int = 15) -> dict[str, np.ndarray]:
    """The task's metrics plus NLL/ECE/Brier (NaN when there are no probabilities: majority vote)."""
    out: dict[str, np.ndarray] = {}
    conf = confusion(pred, labels, num_classes) if {"f1", "matthews_correlation"} & set(names) else None
    for name in names:
        if name == "accuracy":
            out[name] = accuracy(pred, labels)
        elif name == "f1":
            out[name] = f1_binary(conf)
        elif name == "matthews_correlation":
            out[name] = matthews(conf)
        else:
            raise ValueError(f"metric {name!r} is not a classification metric")
    nan = np.full(pred.shape[:-1], np.nan)
    out["nll"] = nan if probs is None else nll(probs, labels)
    out["ece"] = nan if probs is None else ece(probs, labels, ece_bins)
    out["brier"] = nan if probs is None else brier(probs, labels)
    return _to_percent(out)


def regression_scores(scores: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    table = {"pearson": pearson, "spearmanr": spearman}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"metric {unknown[0]!r} is not a regression metric")
    return _to_percent({name: table[name](scores, labels) for name in names})


def _to_percent(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: 100 * v if k in PERCENT else v for k, v in scores.items()}
