"""Dynamic sparse training behind one object whose ``step()`` wraps the optimizer.

Masks are enforced by zeroing weights (and the optimizer's per-weight state) after every
step, and by masking gradients as they are computed, so gradient clipping, momentum and
weight decay only ever see the active weights.

Dense gradients for RigL: a gradient hook on every sparse weight sees the *dense*
gradient (autograd computes dL/dw for every entry of a zero-filled weight matrix) before
it masks it. On the steps where a prune-and-regrow is due, the hook keeps a copy of that
dense gradient, and growth ranks the inactive positions by its magnitude. On all other
steps nothing is copied. Those steps are counted in ``dense_grad_steps`` (FLOPs).

``regrown_momentum="keep"`` runs as VITA-Group/FreeTickets' ``Masking`` does (core.py,
apply_mask, lines 376-382): gradients are not masked and the optimizer state of inactive
weights is not zeroed, only the weights are, so a regrown weight starts at zero with the
momentum its position has gathered. Active weights train exactly as with ``"zero"`` unless
gradient clipping is on (the clipping norm then includes the inactive gradients).

Layers that ERK made dense (density 1) have nothing inactive to move. ``dense_layers="skip"``
leaves them alone; ``"reset"`` does what the reference's ``truncate_weights`` does to them
(core.py 384-431: magnitude death zeroes ceil(rate * n) smallest weights, then gradient growth
finds the layer at density 1 and reopens the whole mask, 616-618): the ceil(rate * n) smallest
weights are set to zero and keep training from there (with ``regrown_momentum="zero"`` their
optimizer state is zeroed too).

Under fp16 a GradScaler calls ``step()`` only when the gradients are finite; a skipped step
changes no weight, mask or schedule, and ``zero_grad`` drops the dense gradients it kept.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class UpdateRule:
    """When and how much of the topology changes."""

    death_rate: float = 0.5  # fraction of a layer's active weights dropped per update
    schedule: str = "constant"  # constant | cosine (decays to 0 over total_steps)
    growth: str = "rigl"  # rigl (largest |dense grad|) | random (SET)
    update_frequency: int = 100  # optimizer steps between updates; 0 = fixed topology
    total_steps: int = 0  # horizon of the whole run: cosine period, no update at or after it

    def __post_init__(self):
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"unknown death_rate_schedule {self.schedule!r}: use constant or cosine")
        if self.growth not in ("rigl", "random"):
            raise ValueError(f"unknown growth {self.growth!r}: use rigl or random")
        if not 0.0 <= self.death_rate <= 1.0:
            raise ValueError(f"death_rate {self.death_rate} is outside [0, 1]")
        if self.schedule == "cosine" and self.total_steps <= 0:
            raise ValueError("a cosine death rate needs total_steps > 0 (the run's optimizer steps)")

    def death_rate_at(self, step: int) -> float:
        """The death rate used by an update at optimizer step `step` (1-based)."""
        if self.schedule == "constant":
            return self.death_rate
        progress = min(step, self.total_steps) / self.total_steps
        return 0.5 * self.death_rate * (1.0 + math.cos(math.pi * progress))


def is_update_step(step: int, frequency: int, total_steps: int = 0, phase_end: int = 0) -> bool:
    """A scheduled topology update falls on every `frequency`-th step, never on or after the
    end of the run or of the current phase (a member is never saved with just-regrown zeros)."""
    if frequency <= 0 or step % frequency:
        return False
    return all(end <= 0 or step < end for end in (total_steps, phase_end))


class SparseEngine:
    """Holds the masks of the sparse weights; use as trainer hooks (``wrap_optimizer``).

    Make it from the model on its device: the masks are put where the parameters are."""

    _step_supports_amp_scaling = False  # fp16: GradScaler calls step() only for finite gradients

    def __init__(self, model: nn.Module, masks: Mapping[str, torch.Tensor], rule: UpdateRule, seed: int = 0,
                 regrown_momentum: str = "zero", dense_layers: str = "skip"):
        if regrown_momentum not in ("zero", "keep"):
            raise ValueError(f"unknown regrown_momentum {regrown_momentum!r}: use zero or keep")
        if dense_layers not in ("skip", "reset"):
            raise ValueError(f"unknown dense_layers {dense_layers!r}: use skip or reset")
        self.keep_momentum = regrown_momentum == "keep"
        self.reset_dense = dense_layers == "reset"
        params = dict(model.named_parameters())
        missing = [n for n in masks if n not in params]
        if missing:
            raise ValueError(f"masks name parameters the model does not have: {missing[:3]}")
        self.params = {n: params[n] for n in masks}
        self.masks = {n: m.to(device=self.params[n].device, dtype=torch.bool).clone() for n, m in masks.items()}
        self.rule = rule
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = None
        self.steps = 0
        self.dense_grad_steps = 0
        self.history: list[dict] = []  # one entry per topology update
        self.phase_end = 0  # no scheduled update at or after this step (0: none); see below
        self._pending_rate: float | None = None
        self._dense_grads: dict[str, torch.Tensor] = {}
        self._handles = [p.register_hook(self._make_grad_hook(n)) for n, p in self.params.items()]
        self.apply_masks()

    # --- trainer hook protocol and optimizer facade -------------------------------------
    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> "SparseEngine":
        """Take over `optimizer.step()`; everything else is forwarded to the optimizer."""
        self.optimizer = optimizer
        self.apply_masks()
        return self

    def __getattr__(self, name: str):
        opt = self.__dict__.get("optimizer")
        if opt is None:
            raise AttributeError(name)
        return getattr(opt, name)

    def step(self, closure=None):
        """Optimizer step, then masks, then a prune-and-regrow when one is due."""
        loss = self.optimizer.step(closure) if closure is not None else self.optimizer.step()
        self.steps += 1
        self.apply_masks()
        rate = self._due_rate(self.steps)
        if rate is not None:
            jump, self._pending_rate = self._pending_rate is not None, None
            self.prune_and_regrow(rate)
            self.history[-1]["jump"] = jump
        self._dense_grads.clear()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The optimizer's zero_grad, and the dense gradients kept for growth (a step the fp16 scaler
        skipped leaves them behind)."""
        self._dense_grads.clear()
        self.optimizer.zero_grad(set_to_none=set_to_none)

    # --- schedule -----------------------------------------------------------------------
    def schedule_jump(self, rate: float) -> None:
        """Make the next optimizer step end with a prune-and-regrow at `rate` (EDST phases)."""
        self._pending_rate = float(rate)

    def _due_rate(self, step: int) -> float | None:
        if self._pending_rate is not None:
            return self._pending_rate
        if is_update_step(step, self.rule.update_frequency, self.rule.total_steps, self.phase_end):
            return self.rule.death_rate_at(step)
        return None

    def _make_grad_hook(self, name: str):
        def hook(grad: torch.Tensor) -> torch.Tensor:
            if self.rule.growth == "rigl" and self._due_rate(self.steps + 1) is not None:
                prev = self._dense_grads.get(name)  # several backward passes add up
                self._dense_grads[name] = grad.detach().clone() if prev is None else prev + grad.detach()
            return grad if self.keep_momentum else grad * self.masks[name]
        return hook

    # --- masks --------------------------------------------------------------------------
    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zero inactive weights and (unless regrown_momentum=keep) their optimizer state."""
        for name, p in self.params.items():
            off = ~self.masks[name]
            p.masked_fill_(off, 0.0)
            keep = self.keep_momentum or self.optimizer is None
            state = {} if keep else self.optimizer.state.get(p, {})
            for value in state.values():
                if torch.is_tensor(value) and value.shape == p.shape:
                    value.masked_fill_(off, 0.0)

    @torch.no_grad()
    def prune_and_regrow(self, rate: float) -> dict[str, tuple[int, int]]:
        """Per layer, drop ceil(rate * active) lowest-|w| active weights and regrow as many
        (largest |dense grad| for rigl, uniformly at random for SET) at zero value. A layer ERK made
        dense is skipped, or (``dense_layers="reset"``) its ceil(rate * n) lowest-|w| weights restart at 0."""
        if self.rule.growth == "rigl":
            self.dense_grad_steps += 1
        counts = {}
        for name, p in self.params.items():
            mask = self.masks[name].view(-1)
            n_active = int(mask.sum())
            if n_active == mask.numel():  # ERK made this layer dense: nothing inactive to move
                if self.reset_dense:
                    counts[name] = self._reset_smallest(p, math.ceil(rate * n_active))
                continue
            k = min(n_active, math.ceil(rate * n_active))
            drop_score = p.detach().abs().view(-1).float().masked_fill(~mask, float("inf"))
            mask[torch.topk(drop_score, k, largest=False).indices] = False
            grown = self._grow_indices(name, mask, k)
            mask[grown] = True
            p.view(-1)[grown] = 0.0  # regrown weights start at zero (RigL / sparselearning)
            counts[name] = (k, int(grown.numel()))
        self.apply_masks()
        self.history.append({"step": self.steps, "rate": rate, "layers": counts,
                             "moved": sum(c[0] for c in counts.values())})
        return counts

    def _reset_smallest(self, p: torch.Tensor, k: int) -> tuple[int, int]:
        """The reference on a dense layer: its k lowest-|w| weights dropped and at once regrown, at zero."""
        k = min(k, p.numel())
        if k == 0:
            return (0, 0)
        idx = torch.topk(p.detach().abs().view(-1).float(), k, largest=False).indices
        p.view(-1)[idx] = 0.0
        state = {} if self.keep_momentum or self.optimizer is None else self.optimizer.state.get(p, {})
        for value in state.values():
            if torch.is_tensor(value) and value.shape == p.shape:
                value.view(-1)[idx] = 0.0
        return (k, k)

    def _grow_indices(self, name: str, mask: torch.Tensor, k: int) -> torch.Tensor:
        if self.rule.growth == "rigl":
            grad = self._dense_grads.get(name)
            if grad is None:
                raise RuntimeError(f"no dense gradient for {name} at a rigl update: call backward before step()")
            score = grad.abs().view(-1).float().masked_fill(mask, -float("inf"))
            return torch.topk(score, k).indices
        candidates = torch.nonzero(~mask).view(-1)
        pick = torch.randperm(candidates.numel(), generator=self.generator)[:k]
        return candidates[pick.to(candidates.device)]

    # --- reporting ----------------------------------------------------------------------
    def masks_numpy(self) -> dict[str, np.ndarray]:
        return {n: m.detach().cpu().numpy().astype(bool) for n, m in self.masks.items()}

    def layer_densities(self) -> dict[str, float]:
        return {n: float(m.float().mean()) for n, m in self.masks.items()}

    def global_density(self) -> float:
        active = sum(int(m.sum()) for m in self.masks.values())
        return active / sum(m.numel() for m in self.masks.values())

    def close(self) -> None:
        """Remove the gradient hooks (the model is dense-trainable again)."""
        for h in self._handles:
            h.remove()
        self._handles = []
