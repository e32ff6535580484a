"""Per-layer densities (ERK or uniform) and the initial masks (pretrained magnitudes or random)."""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

Shape = tuple[int, ...]


def uniform_densities(shapes: Mapping[str, Shape], density: float) -> dict[str, float]:
    """Every layer at the global target density."""
    _check_density(density)
    return {name: float(density) for name in shapes}


def erk_densities(shapes: Mapping[str, Shape], density: float, power: float = 1.0) -> dict[str, float]:
    """Erdős–Rényi-kernel densities: d_l = eps * (sum(dims)/prod(dims))**power, scaled so the
    global density is the target; layers whose d_l would exceed 1 are made dense and eps is
    re-solved over the others (as in sparselearning / RigL)."""
    _check_density(density)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: (sum(s) / math.prod(s)) ** power for n, s in shapes.items()}
    total = sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense]
        if not free:  # only possible at density 1
            return {n: 1.0 for n in shapes}
        # ones the free layers must hold so that the whole network hits the target
        need = density * total - sum(sizes[n] for n in dense)
        eps = need / sum(raw[n] * sizes[n] for n in free)
        # raising eps only ever happens when a layer is capped, so capping every layer
        # over 1 at once gives the same answer as capping the largest one per round
        over = {n for n in free if eps * raw[n] > 1.0}
        if not over:
            break
        dense |= over
    return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}


def layer_densities(kind: str, shapes: Mapping[str, Shape], density: float) -> dict[str, float]:
    """Dispatch on the config name of the distribution (erk | uniform)."""
    if kind == "erk":
        return erk_densities(shapes, density)
    if kind == "uniform":
        return uniform_densities(shapes, density)
    raise ValueError(f"unknown sparse distribution {kind!r}: use erk or uniform")


def active_count(density: float, numel: int) -> int:
    """Exact number of surviving weights of a layer (at least one, so no layer is cut off)."""
    return min(numel, max(1, round(density * numel)))


def init_masks(weights: Mapping[str, torch.Tensor], densities: Mapping[str, float], mode: str,
               generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Boolean masks with exactly `active_count` ones per layer: the largest |w| (`magnitude`,
    i.e. from the pretrained weights) or a uniformly random subset (`random`)."""
    if mode not in ("magnitude", "random"):
        raise ValueError(f"unknown sparse_init {mode!r}: use magnitude or random")
    masks = {}
    for name, w in weights.items():
        k = active_count(densities[name], w.numel())
        if mode == "magnitude":
            keep = torch.topk(w.detach().abs().flatten().float(), k, sorted=False).indices
        else:
            keep = torch.randperm(w.numel(), generator=generator)[:k].to(w.device)
        flat = torch.zeros(w.numel(), dtype=torch.bool, device=w.device)
        flat[keep] = True
        masks[name] = flat.view_as(w)
    return masks


def _check_density(density: float) -> None:
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density {density} is outside (0, 1]: set method.density to e.g. 0.2")
