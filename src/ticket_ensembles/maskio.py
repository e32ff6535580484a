"""Compact mask files: about one bit per prunable weight, loadable without pickle.

``mask.npz`` holds ``names`` (unicode array), ``shapes`` (all dims, concatenated),
``ndims`` (dims per tensor) and ``bits`` (np.packbits of all masks, concatenated,
C order). 1 = the weight survives.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .store import StoreError, save_npz


def save_mask(path: str | Path, masks: dict[str, np.ndarray]) -> None:
    names = list(masks)
    arrays = [np.asarray(masks[n]).astype(bool) for n in names]
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0, bool)
    save_npz(
        path,
        names=np.array(names, dtype=np.str_),
        shapes=np.array([d for a in arrays for d in a.shape], dtype=np.int64),
        ndims=np.array([a.ndim for a in arrays], dtype=np.int64),
        bits=np.packbits(flat),
    )


def load_mask(path: str | Path) -> dict[str, np.ndarray]:
    """Read a mask file back into ``{parameter name: bool array}``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names, shapes, ndims, bits = (z[k] for k in ("names", "shapes", "ndims", "bits"))
    except Exception as e:
        raise StoreError(f"{path} is not a readable mask file ({type(e).__name__}): delete it and re-train the member") from None
    sizes, out, offset, dim_at = [], {}, 0, 0
    for name, nd in zip(names.tolist(), ndims.tolist()):
        shape = tuple(int(d) for d in shapes[dim_at:dim_at + nd])
        dim_at += nd
        sizes.append((name, shape))
    total = sum(int(np.prod(s)) for _, s in sizes)
    flat = np.unpackbits(bits, count=total).astype(bool)
    for name, shape in sizes:
        n = int(np.prod(shape))
        out[name] = flat[offset:offset + n].reshape(shape)
        offset += n
    return out


def mask_iou(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """|a ∩ b| / |a ∪ b| over all prunable weights (the paper's Figure 4)."""
    inter = sum(int(np.logical_and(a[n], b[n]).sum()) for n in a)
    union = sum(int(np.logical_or(a[n], b[n]).sum()) for n in a)
    return inter / union if union else 1.0
