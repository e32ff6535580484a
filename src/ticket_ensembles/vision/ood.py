"""Out-of-distribution detection scores (FreeTickets, Section 5): pure functions over arrays.

A member writes ``ood_<name>.npz`` (logits on the OoD set, labels -1) beside its
predictions; an ensemble averages the members' probabilities on both sets, then scores
each example by its maximum softmax probability (MSP, Hendrycks & Gimpel 2017) or by
its predictive entropy, and AUROC measures how well the score separates the two sets.
"""
from __future__ import annotations

import numpy as np
from scipy.special import softmax
from sklearn.metrics import roc_auc_score


def probabilities(logits: np.ndarray) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64), axis=-1)


def max_softmax(probs: np.ndarray) -> np.ndarray:
    return probs.max(axis=-1)


def predictive_entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=-1)


def ood_auroc(in_probs: np.ndarray, out_probs: np.ndarray) -> dict[str, float]:
    """AUROC (in %) of telling in-distribution from OoD examples: in-distribution is the
    positive class for MSP (confident), OoD is the positive class for entropy (uncertain)."""
    is_in = np.r_[np.ones(len(in_probs)), np.zeros(len(out_probs))]
    msp = np.r_[max_softmax(in_probs), max_softmax(out_probs)]
    ent = np.r_[predictive_entropy(in_probs), predictive_entropy(out_probs)]
    return {"auroc_msp": 100 * float(roc_auc_score(is_in, msp)),
            "auroc_entropy": 100 * float(roc_auc_score(1 - is_in, ent))}


def ensemble_ood_auroc(in_logits: list[np.ndarray], out_logits: list[np.ndarray]) -> dict[str, float]:
    """OoD AUROC of the ensemble that averages the members' probabilities (one member: itself)."""
    if len(in_logits) != len(out_logits) or not in_logits:
        raise ValueError("give the same members' logits on the in-distribution and the OoD set")
    mean_in = np.mean([probabilities(x) for x in in_logits], axis=0)
    mean_out = np.mean([probabilities(x) for x in out_logits], axis=0)
    return ood_auroc(mean_in, mean_out)
