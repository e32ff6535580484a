"""Exhaustive combinatorial evaluation of the member store (reads the store only, never a model).

``evaluate(cfg)`` is what the root ``evaluate.py`` calls; the modules underneath are small:
loading (store -> arrays), combine (every k-subset), metrics and diversity (pure numpy),
significance (t-tests), aggregate (summary rows), tables and figures (rendering), report
(orchestration and atomic writing).
"""
from .errors import EvaluationError

__all__ = ["EvaluationError", "evaluate"]


def __getattr__(name: str):
    """``evaluate`` on first use: training imports the small numpy modules (metrics) without the
    report stack (pandas, scipy.stats, matplotlib), which a train.py process never needs."""
    if name == "evaluate":
        from .report import evaluate

        return evaluate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
