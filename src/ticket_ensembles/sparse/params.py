"""Which parameters are sparse: Linear/Conv weights whose parameter name matches a pattern.

Biases and normalisation layers are never selected (they are not Linear/Conv weights), so
they stay dense. Transformers default to the lottery-ticket methods' prunable set (encoder
linear weights and the pooler; the task head stays dense); image models to every conv and
linear weight, as in sparselearning.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from ..pruning import DEFAULT_PRUNABLE_PATTERNS

# Module types whose `.weight` can be sparse (the layers FLOPs are counted for, too).
SPARSE_MODULE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

DEFAULT_PATTERNS: dict[str, tuple[str, ...]] = {
    "transformer": DEFAULT_PRUNABLE_PATTERNS,
    "image": (r"(^|\.)weight$",),
}


def default_patterns(model_kind: str) -> tuple[str, ...]:
    """Default sparse-parameter patterns of a model family (every non-transformer is an image model)."""
    return DEFAULT_PATTERNS["transformer" if model_kind == "transformer" else "image"]


def sparse_parameter_names(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Names of the Linear/Conv weights that match any regex in `patterns` (re.search)."""
    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error as e:
        raise ValueError(f"method.sparse_patterns holds an invalid regex ({e}): fix the pattern") from None
    names = []
    for mod_name, module in model.named_modules():
        name = f"{mod_name}.weight" if mod_name else "weight"
        if isinstance(module, SPARSE_MODULE_TYPES) and any(p.search(name) for p in compiled):
            names.append(name)
    if not names:
        raise ValueError(f"no Linear/Conv weight matches the sparse patterns {list(patterns)}: "
                         "check method.sparse_patterns against model.named_parameters()")
    return names
