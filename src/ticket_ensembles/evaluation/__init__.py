"""Exhaustive combinatorial evaluation of the member store (reads the store only, never a model).

``evaluate(cfg)`` is what the root ``evaluate.py`` calls; the modules underneath are small:
loading (store -> arrays), combine (every k-subset), metrics and diversity (pure numpy),
significance (t-tests), aggregate (summary rows), tables and figures (rendering), report
(orchestration and atomic writing).
"""
from .errors import EvaluationError
from .report import evaluate

__all__ = ["EvaluationError", "evaluate"]
