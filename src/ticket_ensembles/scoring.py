"""A member's dev metrics at training time: the evaluation metrics with a batch of one.

Training and ``evaluate.py`` share one implementation (``evaluation/metrics.py``), so a
member's logged score is exactly the k=1 score that evaluate reports for it.
"""
from __future__ import annotations

import numpy as np

from .evaluation.metrics import classification_scores, regression_scores
from .tasks import TaskSpec


def member_metrics(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics for one member's logits, as percentages (as GLUE reports them)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if task.is_regression:
        scores = regression_scores(logits.reshape(1, -1).astype(np.float64), labels.astype(np.float64), task.metrics)
    else:
        scores = classification_scores(logits.argmax(-1)[None], None, labels, task.metrics, task.num_labels)
    return {name: round(float(scores[name][0]), 4) for name in task.metrics}
