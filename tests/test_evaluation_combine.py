"""Subset ensembles: counts, constructed members with known answers, combiners, t-tests."""
from __future__ import annotations

from math import comb

import numpy as np
import pytest
from scipy.stats import ttest_ind

from ticket_ensembles.evaluation.combine import score_subsets, subset_matrix
from ticket_ensembles.evaluation.significance import significantly_better, student_t
from ticket_ensembles.tasks import get_task

MRPC, STSB, MNLI = get_task("mrpc"), get_task("stsb"), get_task("mnli")


@pytest.mark.parametrize("n,k", [(10, 1), (10, 2), (10, 5), (10, 10), (7, 3), (20, 4)])
def test_subset_count_is_n_choose_k_and_each_subset_is_distinct(n, k):
    subsets = subset_matrix(n, k)
    assert subsets.shape == (comb(n, k), k)
    assert len({tuple(r) for r in subsets}) == comb(n, k)
    assert (np.diff(subsets, axis=1) > 0).all()  # members in order, none repeated


def test_subset_size_outside_the_members_is_refused():
    with pytest.raises(ValueError):
        subset_matrix(3, 4)


def _three_members() -> tuple[np.ndarray, np.ndarray]:
    """Member i is confidently wrong (p_true 0.05) on examples 2i, 2i+1 and right (0.9) elsewhere."""
    labels = np.array([0, 1, 0, 1, 0, 1])
    p_true = np.full((3, 6), 0.9)
    for i in range(3):
        p_true[i, [2 * i, 2 * i + 1]] = 0.05
    probs = np.empty((3, 6, 2))
    probs[np.arange(3)[:, None], np.arange(6), labels] = p_true
    probs[np.arange(3)[:, None], np.arange(6), 1 - labels] = 1 - p_true
    return np.log(probs), labels


def test_ensemble_accuracy_of_three_constructed_members():
    logits, labels = _three_members()
    single = score_subsets(logits, labels, subset_matrix(3, 1), MRPC, "prob_mean")
    pairs = score_subsets(logits, labels, subset_matrix(3, 2), MRPC, "prob_mean")
    trio = score_subsets(logits, labels, subset_matrix(3, 3), MRPC, "prob_mean")
    np.testing.assert_allclose(single["accuracy"], [400 / 6] * 3)
    # a pair: (0.9 + 0.05) / 2 < 0.5 where either member errs -> wrong on 4 of 6
    np.testing.assert_allclose(pairs["accuracy"], [200 / 6] * 3)
    # all three: (0.9 + 0.9 + 0.05) / 3 > 0.5 everywhere
    np.testing.assert_allclose(trio["accuracy"], [100.0])
    expected_nll = -np.log((0.9 + 0.9 + 0.05) / 3)
    assert trio["nll"][0] == pytest.approx(expected_nll)


def test_majority_vote_breaks_ties_by_mean_probability():
    logits, labels = _three_members()
    votes = score_subsets(logits, labels, subset_matrix(3, 2), MRPC, "vote")
    # 1-1 ties where one member errs: the mean probability of the true class is 0.475, so wrong
    np.testing.assert_allclose(votes["accuracy"], [200 / 6] * 3)
    trio = score_subsets(logits, labels, subset_matrix(3, 3), MRPC, "vote")
    assert trio["accuracy"][0] == pytest.approx(100.0)
    assert np.isnan(trio["nll"][0])  # a vote has no probabilities


def test_vote_majority_beats_a_confident_minority():
    labels = np.array([0])
    p0 = np.array([[0.6], [0.6], [0.01]])  # two members lean right, one is confidently wrong
    logits = np.log(np.stack([p0, 1 - p0], -1))
    assert score_subsets(logits, labels, subset_matrix(3, 3), MRPC, "vote")["accuracy"][0] == 100.0
    assert score_subsets(logits, labels, subset_matrix(3, 3), MRPC, "prob_mean")["accuracy"][0] == 0.0


def test_logit_mean_is_the_softmax_of_mean_logits():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(0, 2, (4, 30, 3)), rng.integers(0, 3, 30)
    got = score_subsets(logits, labels, subset_matrix(4, 2), MNLI, "logit_mean")
    for row, (i, j) in enumerate(subset_matrix(4, 2)):
        mean = (logits[i] + logits[j]) / 2
        p = np.exp(mean) / np.exp(mean).sum(-1, keepdims=True)
        assert got["accuracy"][row] == pytest.approx(100 * np.mean(mean.argmax(-1) == labels))
        assert got["nll"][row] == pytest.approx(-np.mean(np.log(p[np.arange(30), labels])))


def test_regression_ensembles_average_the_scores():
    rng = np.random.default_rng(1)
    labels = rng.uniform(0, 5, 40)
    scores = labels + rng.normal(0, 1, (3, 40))
    got = score_subsets(scores, labels, subset_matrix(3, 3), STSB, "prob_mean")
    assert got["pearson"][0] == pytest.approx(100 * np.corrcoef(scores.mean(0), labels)[0, 1])
    assert set(got) == {"pearson", "spearmanr"}


def test_blocks_of_subsets_give_the_same_scores():
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(0, 1, (10, 50, 2)), rng.integers(0, 2, 50)
    subsets = subset_matrix(10, 5)
    whole = score_subsets(logits, labels, subsets, MRPC, "prob_mean")
    tiny_blocks = score_subsets(logits, labels, subsets, MRPC, "prob_mean", chunk_elements=1000)
    for name in whole:
        np.testing.assert_allclose(tiny_blocks[name], whole[name])
    assert len(whole["accuracy"]) == 252


def test_student_t_equals_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.normal(85, 1, 504), rng.normal(84.5, 1.2, 504)
    t, p = student_t(a, b)
    ref = ttest_ind(a, b, equal_var=True)
    assert (t, p) == pytest.approx((ref.statistic, ref.pvalue))


def test_significance_respects_the_metric_direction():
    a, b = np.array([1.0, 1.1, 0.9]), np.array([2.0, 2.1, 1.9])
    _, p = student_t(a, b)
    assert p < 0.001
    assert significantly_better(a, b, p, 0.05, lower_is_better=True)  # e.g. NLL
    assert not significantly_better(a, b, p, 0.05, lower_is_better=False)
    assert not significantly_better(b, a, 0.2, 0.05, lower_is_better=False)  # not significant


def test_t_test_of_constant_samples_is_undefined():
    assert np.isnan(student_t(np.ones(5), np.ones(5))[1])
    assert np.isnan(student_t(np.ones(1), np.arange(5.0))[1])
