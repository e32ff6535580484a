"""Mask overlap between a method's members (the paper's Figure 4)."""
from __future__ import annotations

import numpy as np

from ..maskio import load_mask, mask_iou
from .errors import EvaluationError
from .loading import MethodData

MASK_FILE = "mask.npz"


def mask_iou_matrix(method: MethodData, max_members: int) -> tuple[list[str], np.ndarray] | None:
    """IoU between the masks of the first ``max_members`` members that have one (members left out as
    degenerate are skipped); None if fewer than 2."""
    chosen = [(n, f / MASK_FILE) for n, f in zip(method.members, method.folders)
              if (f / MASK_FILE).is_file() and n not in method.excluded]
    chosen = chosen[:max_members]
    if len(chosen) < 2:
        return None
    masks = [load_mask(path) for _, path in chosen]
    shapes = {k: v.shape for k, v in masks[0].items()}
    for (member, _), mask in zip(chosen, masks):
        if {k: v.shape for k, v in mask.items()} != shapes:
            raise EvaluationError(f"{method.name}/{member}/{MASK_FILE} covers other parameters than "
                                  f"{method.name}/{chosen[0][0]}: the members come from different models; re-train it")
    n = len(masks)
    iou = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            iou[i, j] = iou[j, i] = mask_iou(masks[i], masks[j])
    return [member for member, _ in chosen], iou
