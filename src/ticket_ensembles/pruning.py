"""Global magnitude pruning over named parameters, rewinding, and masks in the store.

A mask is ``{parameter name: bool tensor}`` over the prunable parameters (True = the
weight survives). Which parameters are prunable is chosen by regex patterns over
``model.named_parameters()``, never by layer indices, so any BERT-family model works.
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import maskio
from .errors import UserError
from .store import StoreError

# The encoder's linear weight matrices and the pooler, in BERT and RoBERTa naming
# (``bert.encoder.layer.0.attention.self.query.weight``, ``roberta.encoder...``).
# ``\d+\.output`` matches the layer's output dense, not ``attention.output.dense``.
DEFAULT_PRUNABLE_PATTERNS: tuple[str, ...] = (
    r"(^|\.)encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.weight$",
    r"(^|\.)encoder\.layer\.\d+\.attention\.output\.dense\.weight$",
    r"(^|\.)encoder\.layer\.\d+\.(intermediate|output)\.dense\.weight$",
    r"(^|\.)pooler\.dense\.weight$",
)
_NEVER_PRUNED = re.compile(r"(embeddings|layernorm|layer_norm|(^|\.)bias$)", re.IGNORECASE)

Masks = dict[str, torch.Tensor]


class PruningError(UserError, ValueError):
    """A pruning setting the user can fix (the message says how)."""


def select_prunable(model: nn.Module, patterns: Sequence[str] = DEFAULT_PRUNABLE_PATTERNS) -> dict[str, nn.Parameter]:
    """Parameters whose name matches any pattern (re.search), in ``named_parameters`` order."""
    try:
        compiled = [re.compile(p) for p in patterns]
    except re.error as e:
        raise PruningError(f"method.prunable_patterns holds an invalid regex ({e}): fix the pattern") from None
    chosen = {n: p for n, p in model.named_parameters() if any(c.search(n) for c in compiled)}
    if not chosen:
        raise PruningError(f"method.prunable_patterns {list(patterns)} match no parameter of "
                           f"{type(model).__name__}: check the names in model.named_parameters()")
    head_prefix = getattr(model, "base_model_prefix", "") or ""
    for name, param in chosen.items():
        in_head = bool(head_prefix) and hasattr(model, head_prefix) and not name.startswith(head_prefix + ".")
        if param.ndim < 2 or in_head or _NEVER_PRUNED.search(name):
            raise PruningError(f"method.prunable_patterns select {name}, which is never pruned (embeddings, "
                               "biases, LayerNorm, the task head): narrow the patterns")
    return chosen


def full_masks(params: dict[str, torch.Tensor]) -> Masks:
    """All-True masks (nothing pruned yet) on each parameter's device."""
    return {n: torch.ones_like(p, dtype=torch.bool) for n, p in params.items()}


def count_total(masks: Masks) -> int:
    return sum(m.numel() for m in masks.values())


def count_pruned(masks: Masks) -> int:
    return sum(m.numel() - int(torch.count_nonzero(m)) for m in masks.values())


def pruning_schedule(prune_ratio: float, prune_step: float) -> list[float]:
    """Cumulative pruned fraction after each round: 0.3, 0.1 -> [0.1, 0.2, 0.3]."""
    if not 0.0 < prune_ratio < 1.0 or not 0.0 < prune_step <= prune_ratio:
        raise PruningError(f"method.prune_step={prune_step} and method.prune_ratio={prune_ratio} must satisfy "
                           "0 < prune_step <= prune_ratio < 1: fix them")
    rounds = math.ceil(prune_ratio / prune_step - 1e-9)  # 0.3 / 0.1 == 2.9999999999999996
    return [min((r + 1) * prune_step, prune_ratio) for r in range(rounds)]


@torch.no_grad()
def prune_lowest_magnitude(params: dict[str, torch.Tensor], masks: Masks, n: int,
                           tiebreak: dict[str, torch.Tensor] | None = None) -> Masks:
    """New masks with exactly ``n`` more weights removed: the lowest |w| among survivors,
    ranked globally over all matrices; ties go to the lower |tiebreak| if given (the rewound
    weights: many weights tie at exactly 0 after a decoupled L1 round), then to the earlier
    weight (name order, C order)."""
    names = list(masks)
    survivors = count_total(masks) - count_pruned(masks)
    if not 0 <= n <= survivors:
        raise PruningError(f"cannot prune {n} weights: only {survivors} survive")
    if n == 0:
        return {k: masks[k].clone() for k in names}
    scores = torch.cat([params[k].detach().abs().float().flatten()
                        .masked_fill(~masks[k].flatten(), math.inf) for k in names])
    if torch.isnan(scores).any():
        raise PruningError("the model holds NaN weights (the finetune diverged): lower trainer.lr and re-run")
    threshold = scores.kthvalue(n).values
    remove = scores < threshold
    tied = (scores == threshold).nonzero().flatten()
    if tiebreak is not None and len(tied) > n - int(remove.sum()):
        second = torch.cat([tiebreak[k].detach().abs().float().flatten() for k in names])[tied]
        tied = tied[torch.sort(second.cpu(), stable=True).indices.to(tied.device)]
    remove[tied[: n - int(remove.sum())]] = True
    out, offset = {}, 0
    for k in names:
        size = masks[k].numel()
        out[k] = masks[k] & ~remove[offset:offset + size].view(masks[k].shape)
        offset += size
    return out


def prune_to_fraction(params: dict[str, torch.Tensor], masks: Masks, fraction: float,
                      tiebreak: dict[str, torch.Tensor] | None = None) -> Masks:
    """Prune so that round(fraction x prunable count) weights are removed in total."""
    target = round(fraction * count_total(masks))
    return prune_lowest_magnitude(params, masks, target - count_pruned(masks), tiebreak)


@torch.no_grad()
def apply_masks(params: dict[str, torch.Tensor], masks: Masks) -> None:
    """Zero the pruned weights in place."""
    for name, mask in masks.items():
        params[name].mul_(mask.to(device=params[name].device, dtype=params[name].dtype))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter and buffer: theta_s, the weights to rewind to."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def rewind(model: nn.Module, theta: dict[str, torch.Tensor], masks: Masks | None = None) -> None:
    """Copy theta back into the model's own tensors (task head included), then zero pruned weights."""
    model.load_state_dict(theta, strict=True)
    if masks:
        apply_masks(dict(model.named_parameters()), masks)


def random_coefficients(params: dict[str, torch.Tensor], p_zero: float, seed: int) -> Masks:
    """random_lt's L1 coefficient mask: each element 0 with probability p_zero, else 1.

    Drawn on the CPU from a generator of its own seeded with ``seed``, so the draw is the same
    on every device and does not depend on what else used the global RNG.
    """
    gen = torch.Generator().manual_seed(int(seed))
    return {n: (torch.rand(p.shape, generator=gen) >= p_zero).to(device=p.device, dtype=p.dtype)
            for n, p in params.items()}


def mean_of_masks(masks: Sequence[Masks], like: dict[str, torch.Tensor]) -> Masks:
    """active_lt's coefficient mask: the element-wise mean of earlier members' final masks."""
    if not masks:
        raise ValueError("mean_of_masks needs at least one mask")
    return {n: (sum(m[n].to(device=p.device, dtype=torch.float32) for m in masks) / len(masks)).to(p.dtype)
            for n, p in like.items()}


def sparsity_report(masks: Masks) -> dict:
    """Global and per-matrix pruned fractions for metrics.json."""
    total, pruned = count_total(masks), count_pruned(masks)
    return {
        "sparsity": pruned / total if total else 0.0,
        "prunable_weights": total,
        "pruned_weights": pruned,
        "sparsity_per_matrix": {n: 1.0 - int(torch.count_nonzero(m)) / m.numel() for n, m in masks.items()},
    }


def save_masks(path: str | Path, masks: Masks) -> None:
    """Write masks as a compact mask file (packed bits, names and shapes alongside)."""
    maskio.save_mask(path, {n: m.detach().cpu().numpy() for n, m in masks.items()})


def load_masks(path: str | Path, params: dict[str, torch.Tensor]) -> Masks:
    """Read a mask file and check it fits ``params`` (same names and shapes), on their devices."""
    stored = maskio.load_mask(path)
    missing = sorted(set(stored) - set(params))
    if missing:
        raise StoreError(f"{path} masks {missing[0]} (and {len(missing) - 1} more), which this model lacks: "
                         "load it onto the model and prunable patterns it was made with")
    out = {}
    for name, arr in stored.items():
        if tuple(arr.shape) != tuple(params[name].shape):
            raise StoreError(f"{path} has shape {arr.shape} for {name} but the model has "
                             f"{tuple(params[name].shape)}: it belongs to a different model")
        out[name] = torch.from_numpy(np.ascontiguousarray(arr)).to(params[name].device)
    return out


def apply_stored_mask(model: nn.Module, path: str | Path) -> Masks:
    """Load a member's mask.npz onto a model: pruned weights become zero. Returns the masks."""
    params = dict(model.named_parameters())
    masks = load_masks(path, params)
    apply_masks(params, masks)
    return masks


def masks_equal(a: Masks, b: Masks) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[n].cpu(), b[n].cpu()) for n in a)

