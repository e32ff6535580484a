"""Ensemble every k-subset of a group's members at once.

Subsets are rows of an index matrix [C(n, k), k]; an ensemble's output is a gather and a
sum over that matrix, computed in blocks of subsets so memory stays bounded (MNLI: 9,815
examples x 3 classes per subset).
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from math import comb

import numpy as np

from ..tasks import TaskSpec
from .errors import EvaluationError
from .metrics import classification_scores, regression_scores, softmax

COMBINERS = ("prob_mean", "logit_mean", "vote")


def subset_matrix(n: int, k: int) -> np.ndarray:
    """All k-subsets of range(n), one per row, in lexicographic order: int array [C(n, k), k]."""
    if not 1 <= k <= n:
        raise ValueError(f"subset size {k} must be between 1 and the {n} members")
    flat = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(n), k)),
                       dtype=np.intp, count=comb(n, k) * k)
    return flat.reshape(-1, k)


def check_combiner(combiner: str, task: TaskSpec) -> str:
    combiner = getattr(combiner, "value", combiner)
    if combiner not in COMBINERS:
        raise EvaluationError(f"ensemble.combiner={combiner!r} is unknown: choose one of {', '.join(COMBINERS)}")
    if combiner == "vote" and task.is_regression:
        raise EvaluationError(f"ensemble.combiner=vote needs classes but {task.name} is a regression task: "
                              "use prob_mean (the mean score)")
    return combiner


def member_outputs(logits: np.ndarray, combiner: str, k: int, regression: bool) -> np.ndarray:
    """What gets averaged over a subset's members: probabilities, logits, scores, or votes.

    A vote is the member's one-hot class plus half its probabilities divided by k; summed
    over k members that is the vote count plus half the mean probability (< 0.5), so the
    majority always wins and a tie goes to the class with the higher mean probability.
    """
    if regression or combiner == "logit_mean":
        return logits
    probs = softmax(logits)
    if combiner == "prob_mean":
        return probs
    onehot = np.eye(logits.shape[-1])[logits.argmax(-1)]
    return onehot + 0.5 * probs / k


def subset_means(outputs: np.ndarray, subsets: np.ndarray, chunk_elements: int) -> Iterator[np.ndarray]:
    """Mean member output of each subset, yielded in blocks of subsets ([s, N(, C)] each)."""
    per_subset = int(np.prod(outputs.shape[1:]))
    block = max(1, chunk_elements // max(per_subset, 1))
    k = subsets.shape[1]
    for start in range(0, len(subsets), block):
        rows = subsets[start:start + block]
        total = outputs[rows[:, 0]].copy()
        for j in range(1, k):
            total += outputs[rows[:, j]]
        yield total / k


def score_subsets(logits: np.ndarray, labels: np.ndarray, subsets: np.ndarray, task: TaskSpec,
                  combiner: str, ece_bins: int = 15, chunk_elements: int = 20_000_000) -> dict[str, np.ndarray]:
    """Every metric of every subset's ensemble: ``{metric: array [n_subsets]}``.

    ``logits`` are one group's members [M, N, C] (regression: [M, N]); ``subsets`` index them.
    """
    k = subsets.shape[1]
    outputs = member_outputs(logits, combiner, k, task.is_regression)
    blocks: list[dict[str, np.ndarray]] = []
    for mean in subset_means(outputs, subsets, chunk_elements):
        if task.is_regression:
            blocks.append(regression_scores(mean, labels, task.metrics))
            continue
        probs = softmax(mean) if combiner == "logit_mean" else (None if combiner == "vote" else mean)
        blocks.append(classification_scores(mean.argmax(-1), probs, labels, task.metrics,
                                            task.num_labels, ece_bins))
    return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}
