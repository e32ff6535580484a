"""Diversity measures on hand-counted 2x2 contingencies, including N00 = 0."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ticket_ensembles.evaluation import diversity as div


def _pair(n11: int, n10: int, n01: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions of two members whose oracle outputs have exactly these counts (label 0 everywhere)."""
    first = [0] * n11 + [0] * n10 + [1] * n01 + [1] * n00
    second = [0] * n11 + [1] * n10 + [0] * n01 + [1] * n00
    return np.array([first, second]), np.zeros(len(first), dtype=int)


def test_oracle_counts_are_the_hand_counts():
    pred, labels = _pair(5, 2, 1, 2)
    n11, n10, n01, n00 = div.oracle_counts(pred == labels)
    assert (n11[0, 1], n10[0, 1], n01[0, 1], n00[0, 1]) == (5, 2, 1, 2)
    assert (n10[1, 0], n01[1, 0]) == (1, 2)  # the other order swaps the one-right counts


def test_each_measure_on_a_hand_counted_pair():
    # N11=5, N10=2, N01=1, N00=2, N=10
    pred, labels = _pair(5, 2, 1, 2)
    got = div.pairwise_measures(pred, labels)
    assert got["q_statistic"] == pytest.approx((5 * 2 - 1 * 2) / (5 * 2 + 1 * 2))  # 8/12
    assert got["ratio_errors"] == pytest.approx((1 + 2) / 2)
    assert got["negative_double_fault"] == pytest.approx(-2 / 10)
    assert got["disagreement"] == pytest.approx(3 / 10)
    assert got["correlation"] == pytest.approx(8 / math.sqrt((5 + 2) * (1 + 2) * (5 + 1) * (2 + 2)))
    assert got["pairs"] == 1 and got["ratio_errors_undefined_pairs"] == 0


def test_no_shared_error_is_handled_explicitly():
    # N11=6, N10=3, N01=1, N00=0: different errors but never the same one
    assert div.ratio_errors(6, 3, 1, 0) == math.inf
    assert div.q_statistic(6, 3, 1, 0) == pytest.approx(-1.0)
    assert div.correlation(6, 3, 1, 0) == pytest.approx(-3 / math.sqrt(9 * 1 * 7 * 3))
    assert div.negative_double_fault(6, 3, 1, 0) == 0.0
    assert div.disagreement(6, 3, 1, 0) == pytest.approx(0.4)
    # two members that never err: no error of either kind, the ratio and Q are undefined
    assert math.isnan(div.ratio_errors(10, 0, 0, 0)) and math.isnan(div.q_statistic(10, 0, 0, 0))
    assert math.isnan(div.correlation(10, 0, 0, 0))


def test_pairs_without_a_shared_error_are_counted_and_left_out_of_the_mean():
    # three members: (0,1) share errors, (0,2) and (1,2) never do
    labels = np.zeros(10, dtype=int)
    pred = np.zeros((3, 10), dtype=int)
    pred[0, [0, 1, 2]] = 1
    pred[1, [0, 1, 3]] = 1
    pred[2, [8, 9]] = 1
    got = div.pairwise_measures(pred, labels)
    assert got["pairs"] == 3
    assert got["ratio_errors"] == pytest.approx((1 + 1) / 2)  # only pair (0, 1): N00=2, N10=N01=1
    assert got["ratio_errors_undefined_pairs"] == 2
    expected_d = np.mean([2 / 10, 5 / 10, 5 / 10])
    assert got["disagreement"] == pytest.approx(expected_d)


def test_all_pairs_without_shared_errors_give_inf():
    labels = np.zeros(4, dtype=int)
    pred = np.array([[1, 0, 0, 0], [0, 1, 0, 0]])
    assert div.pairwise_measures(pred, labels)["ratio_errors"] == math.inf


def test_pair_average_is_the_mean_of_the_three_pairs():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    pred = np.where(rng.random((3, 60)) < 0.8, labels, 1 - labels)
    got = div.pairwise_measures(pred, labels)
    for name in div.ORACLE_MEASURES:
        fn = getattr(div, name)
        per_pair = []
        for i, j in [(0, 1), (0, 2), (1, 2)]:
            a, b = pred[i] == labels, pred[j] == labels
            per_pair.append(fn(np.sum(a & b), np.sum(a & ~b), np.sum(~a & b), np.sum(~a & ~b)))
        assert got[name] == pytest.approx(float(np.mean(per_pair))), name


def test_prediction_disagreement_and_kl_match_loops():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1.5, (4, 50, 3))
    pred = logits.argmax(-1)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    kl = np.mean([np.mean(np.sum(p[i] * (np.log(p[i]) - np.log(p[j])), -1)) for i, j in pairs])
    dis = np.mean([np.mean(pred[i] != pred[j]) for i, j in pairs if i < j])
    assert div.mean_pairwise_kl(logits) == pytest.approx(kl)
    assert div.prediction_disagreement(pred) == pytest.approx(dis)


def test_identical_members_are_not_diverse():
    logits = np.tile(np.random.default_rng(2).normal(size=(1, 30, 2)), (3, 1, 1))
    labels = np.zeros(30, dtype=int)
    got = div.group_diversity(logits, labels, regression=False)
    assert got["disagreement"] == 0 and got["prediction_disagreement"] == 0
    assert got["kl"] == pytest.approx(0.0, abs=1e-12)
