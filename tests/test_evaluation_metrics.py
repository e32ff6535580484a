"""Metric functions: hand examples, and the vectorised versions against scikit-learn / scipy."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from ticket_ensembles.evaluation import metrics


def test_nll_on_a_hand_example():
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])
    labels = np.array([0, 0, 1])
    expected = -(math.log(0.8) + math.log(0.4) + math.log(0.9)) / 3
    assert metrics.nll(probs, labels) == pytest.approx(expected)


def test_nll_of_a_zero_probability_is_finite_and_large():
    assert 700 < metrics.nll(np.array([[1.0, 0.0]]), np.array([1])) < 710


def test_ece_on_a_hand_example_with_15_bins():
    # confidences 0.9, 0.9 (one right, one wrong) share bin (13/15, 14/15]; 0.7 and 0.65 sit alone
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.65, 0.35]])
    labels = np.array([0, 1, 1, 0])
    expected = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.7) + 1 / 4 * abs(1 - 0.65)
    assert metrics.ece(probs, labels, 15) == pytest.approx(expected)


def test_ece_of_a_perfectly_calibrated_bin_is_zero():
    # four examples at confidence 0.75, three of them right
    probs = np.tile([0.75, 0.25], (4, 1))
    assert metrics.ece(probs, np.array([0, 0, 0, 1]), 15) == pytest.approx(0.0)


def _ece_reference(probs, labels, n_bins):
    """Guo et al.'s loop over explicit bin edges (lo, hi]."""
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
    return total


def test_ece_matches_a_loop_over_bins_for_every_subset():
    rng = np.random.default_rng(1)
    probs = metrics.softmax(rng.normal(0, 2, (7, 200, 3)))
    labels = rng.integers(0, 3, 200)
    got = metrics.ece(probs, labels, 15)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, [_ece_reference(p, labels, 15) for p in probs], atol=1e-12)


def test_brier_on_a_hand_example():
    probs = np.array([[0.8, 0.2], [0.4, 0.6]])
    labels = np.array([0, 0])
    assert metrics.brier(probs, labels) == pytest.approx(((0.2**2 + 0.2**2) + (0.6**2 + 0.6**2)) / 2)


def test_classification_metrics_match_sklearn_per_subset():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 150)
    pred = rng.integers(0, 2, (9, 150))
    pred[0] = 0  # no positive prediction: F1 is 0, as sklearn's zero_division=0
    conf = metrics.confusion(pred, labels, 2)
    np.testing.assert_allclose(metrics.accuracy(pred, labels), [accuracy_score(labels, p) for p in pred])
    np.testing.assert_allclose(metrics.f1_binary(conf), [f1_score(labels, p, zero_division=0) for p in pred])
    np.testing.assert_allclose(metrics.matthews(conf), [matthews_corrcoef(labels, p) for p in pred], atol=1e-12)


def test_multiclass_matthews_matches_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 300)
    pred = np.where(rng.random((5, 300)) < 0.6, labels, rng.integers(0, 3, (5, 300)))
    conf = metrics.confusion(pred, labels, 3)
    assert conf.shape == (5, 3, 3) and (conf.sum(axis=(1, 2)) == 300).all()
    np.testing.assert_allclose(metrics.matthews(conf), [matthews_corrcoef(labels, p) for p in pred], atol=1e-12)


def test_correlations_match_scipy_including_ties():
    rng = np.random.default_rng(4)
    labels = np.round(rng.uniform(0, 5, 120), 1)  # STS-B-like scores with ties
    scores = np.round(labels + rng.normal(0, 1, (6, 120)), 1)
    np.testing.assert_allclose(metrics.pearson(scores, labels), [pearsonr(s, labels)[0] for s in scores])
    np.testing.assert_allclose(metrics.spearman(scores, labels), [spearmanr(s, labels)[0] for s in scores])


def test_a_constant_prediction_has_no_correlation():
    assert np.isnan(metrics.pearson(np.ones((1, 5)), np.arange(5.0)))[0]


def test_scores_come_in_percent_and_vote_has_no_calibration():
    labels = np.array([0, 1, 1, 0])
    pred = np.array([[0, 1, 0, 0]])
    out = metrics.classification_scores(pred, None, labels, ("accuracy", "f1"), 2)
    assert out["accuracy"][0] == pytest.approx(75.0)
    assert out["f1"][0] == pytest.approx(100 * 2 / 3)
    assert all(np.isnan(out[m][0]) for m in ("nll", "ece", "brier"))


@pytest.mark.parametrize("task_name", ["mrpc", "cola", "stsb"])
def test_a_members_training_time_metrics_match_sklearn_and_scipy(task_name):
    """scoring.member_metrics (logged at training time) goes through the same functions as evaluate."""
    from ticket_ensembles.scoring import member_metrics
    from ticket_ensembles.tasks import get_task

    task = get_task(task_name)
    rng = np.random.default_rng(3)
    if task.is_regression:
        labels = rng.uniform(0, 5, 200)
        logits = (labels + rng.normal(0, 1.5, 200))[:, None].astype(np.float32)
        expected = {"pearson": pearsonr(logits[:, 0], labels)[0], "spearmanr": spearmanr(logits[:, 0], labels)[0]}
    else:
        labels = rng.integers(0, 2, 200)
        logits = rng.normal(size=(200, 2)).astype(np.float32) + 0.8 * np.eye(2)[labels]
        pred = logits.argmax(-1)
        expected = {"accuracy": accuracy_score(labels, pred), "f1": f1_score(labels, pred),
                    "matthews_correlation": matthews_corrcoef(labels, pred)}
    got = member_metrics(task, logits, labels)
    assert set(got) == set(task.metrics)
    for name in task.metrics:
        assert got[name] == pytest.approx(100 * expected[name], abs=1e-4)
