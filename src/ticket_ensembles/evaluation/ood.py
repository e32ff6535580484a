"""Out-of-distribution detection (FreeTickets, Section 5): AUROC of MSP and of predictive entropy.

When data.ood names a set, every member writes ``ood_<name>.npz`` (logits on the OoD set,
labels -1) beside its predictions. An ensemble averages its members' probabilities on both
sets (with combiner=logit_mean: the softmax of the mean logits), then scores each example by
its maximum softmax probability (MSP, Hendrycks & Gimpel 2017) or by its predictive entropy;
AUROC (in %) measures how well the score tells in-distribution test examples from OoD ones.
In-distribution is the positive class for MSP (confident), OoD for entropy (uncertain).
Pure numpy: AUROC from average ranks (a tie counts one half, as scikit-learn's
roc_auc_score), vectorised over subsets like every other metric here.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from .combine import subset_means
from .metrics import softmax


def max_softmax(probs: np.ndarray) -> np.ndarray:
    return probs.max(axis=-1)


def predictive_entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=-1)


def auroc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """AUROC in % of each row of ``scores`` [..., N] for the boolean labels ``positive`` [N]
    (Mann-Whitney U over average ranks)."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        raise ValueError("AUROC needs both in-distribution and out-of-distribution examples")
    ranks = rankdata(scores, axis=-1)
    u = ranks[..., positive].sum(axis=-1) - n_pos * (n_pos + 1) / 2
    return 100.0 * u / (n_pos * n_neg)


def _scores(probs: np.ndarray, is_in: np.ndarray) -> dict[str, np.ndarray]:
    return {"auroc_msp": auroc(max_softmax(probs), is_in), "auroc_entropy": auroc(predictive_entropy(probs), ~is_in)}


def ood_auroc(in_probs: np.ndarray, out_probs: np.ndarray) -> dict[str, float]:
    """AUROC (in %) of MSP and of entropy for one model's probabilities on the two sets."""
    is_in = np.r_[np.ones(len(in_probs), bool), np.zeros(len(out_probs), bool)]
    scores = _scores(np.concatenate([in_probs, out_probs]), is_in)
    return {name: float(value) for name, value in scores.items()}


def ensemble_ood_auroc(in_logits: list[np.ndarray], out_logits: list[np.ndarray]) -> dict[str, float]:
    """OoD AUROC of the ensemble that averages the members' probabilities (one member: itself)."""
    if len(in_logits) != len(out_logits) or not in_logits:
        raise ValueError("give the same members' logits on the in-distribution and the OoD set")
    mean_in = np.mean([softmax(np.asarray(x, np.float64)) for x in in_logits], axis=0)
    mean_out = np.mean([softmax(np.asarray(x, np.float64)) for x in out_logits], axis=0)
    return ood_auroc(mean_in, mean_out)


def subset_ood_auroc(in_logits: np.ndarray, out_logits: np.ndarray, subsets: np.ndarray, combiner: str,
                     chunk_elements: int = 20_000_000) -> dict[str, np.ndarray]:
    """OoD AUROC of every subset's ensemble: members' logits [M, N_in, C] and [M, N_out, C]."""
    is_in = np.r_[np.ones(in_logits.shape[1], bool), np.zeros(out_logits.shape[1], bool)]
    both = np.concatenate([in_logits, out_logits], axis=1)
    mean_logits = combiner == "logit_mean"  # a vote has no probabilities: it is scored on their mean
    outputs = both if mean_logits else softmax(both)
    blocks = [_scores(softmax(mean) if mean_logits else mean, is_in)
              for mean in subset_means(outputs, subsets, chunk_elements)]
    return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}
