"""A member's dev metrics at training time (the task table names them)."""
from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .tasks import TaskSpec

_CLASSIFICATION = {
    "accuracy": accuracy_score,
    "f1": lambda y, p: f1_score(y, p, zero_division=0),
    "matthews_correlation": matthews_corrcoef,
}
_REGRESSION = {"pearson": lambda y, s: pearsonr(s, y)[0], "spearmanr": lambda y, s: spearmanr(s, y)[0]}


def member_metrics(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's GLUE metrics for one member's logits, as percentages (as GLUE reports them)."""
    table = _REGRESSION if task.is_regression else _CLASSIFICATION
    outputs = logits if task.is_regression else logits.argmax(-1)
    return {name: round(100 * float(table[name](labels, outputs)), 4) for name in task.metrics}
