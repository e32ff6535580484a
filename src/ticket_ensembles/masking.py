"""Trainer hooks for a fixed-mask finetune: pruned weights stay exactly zero, plus an
optional L1 penalty tau * ||theta ⊙ l||_1 (active_lt / random_lt).

Use as a context manager around one finetune::

    with MaskedTraining(params, masks, coefficients, tau) as hooks:
        finetune(model, train_ds, cfg, seed, hooks=hooks)
"""
from __future__ import annotations

import torch

from .pruning import Masks, apply_masks


class MaskedOptimizer:
    """Wraps an optimizer: after every step, multiply the prunable weights by their masks.

    This undoes anything the step did to a pruned weight, AdamW's decoupled weight decay
    and momentum included, with one fused in-place multiply per step.
    """

    def __init__(self, optimizer, params: list[torch.Tensor], factors: list[torch.Tensor]):
        self.optimizer, self._params, self._factors = optimizer, params, factors

    def step(self, *args, **kwargs):
        out = self.optimizer.step(*args, **kwargs)
        with torch.no_grad():
            torch._foreach_mul_(self._params, self._factors)
        return out

    def __getattr__(self, name):  # zero_grad, param_groups, state_dict ... of the real optimizer
        return getattr(self.optimizer, name)


class MaskedTraining:
    """Hooks object for ``trainer.finetune``: keeps a mask fixed and adds an optional L1 penalty.

    Gradients of pruned weights are zeroed as they are accumulated, so gradient clipping and
    Adam's moments see the subnetwork only (as with ``torch.nn.utils.prune``), and the wrapped
    optimizer re-zeroes the weights after each step.
    """

    def __init__(self, params: dict[str, torch.Tensor], masks: Masks | None = None,
                 coefficients: Masks | None = None, tau: float = 0.0):
        self.params = params
        self.masks = masks
        self.coefficients = coefficients if coefficients and tau > 0 else None
        self.tau = float(tau)
        self._handles: list = []
        self._factors: list[torch.Tensor] = []
        self._penalised: list[torch.Tensor] = []
        self._coef_list: list[torch.Tensor] = []
        self._signed: list[torch.Tensor] = []  # l * sign(theta), reused every step

    def __enter__(self) -> "MaskedTraining":
        if self.masks:
            apply_masks(self.params, self.masks)
            names = list(self.masks)
            self._masked = [self.params[n] for n in names]
            self._factors = [self.masks[n].to(device=p.device, dtype=p.dtype) for n, p in zip(names, self._masked)]
            for p, f in zip(self._masked, self._factors):
                self._handles.append(p.register_post_accumulate_grad_hook(_grad_masker(f)))
        if self.coefficients is not None:
            names = list(self.coefficients)
            self._penalised = [self.params[n] for n in names]
            self._coef_list = [self.coefficients[n] for n in names]
            self._signed = [torch.empty_like(p, requires_grad=False) for p in self._penalised]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._signed = []

    def wrap_optimizer(self, optimizer):
        if not self._factors:
            return optimizer
        return MaskedOptimizer(optimizer, self._masked, self._factors)

    def extra_loss(self, model, lr_scale: float) -> torch.Tensor | None:
        """tau * lr_scale * sum |theta| * l over the penalised weights (None when off)."""
        if not self._penalised or lr_scale <= 0.0:
            return None
        return WeightedL1.apply(self.tau * lr_scale, self._coef_list, self._signed, *self._penalised)


class WeightedL1(torch.autograd.Function):
    """scale * sum |theta| * l for coefficients l >= 0, with gradient scale * l * sign(theta).

    Autograd through mul and an L1 norm allocates three full-size temporaries every step, and on
    a CPU fresh memory costs more than the arithmetic. This writes l * sign(theta) into buffers
    kept across steps and uses them for the value (a dot with theta) and for the gradient.
    """

    @staticmethod
    def forward(ctx, scale: float, coefficients: list[torch.Tensor], buffers: list[torch.Tensor],
                *params: torch.Tensor) -> torch.Tensor:
        for p, buf in zip(params, buffers):
            torch.sign(p.detach(), out=buf)
        torch._foreach_mul_(buffers, coefficients)
        value = torch.stack([torch.dot(p.reshape(-1), b.reshape(-1)) for p, b in zip(params, buffers)]).sum()
        ctx.buffers, ctx.scale = buffers, scale
        return value * scale

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        buffers, ctx.buffers = ctx.buffers, None
        torch._foreach_mul_(buffers, grad_out * ctx.scale)
        return (None, None, None, *buffers)


def _grad_masker(factor: torch.Tensor):
    def hook(param: torch.Tensor) -> None:
        if param.grad is not None:
            param.grad.mul_(factor)
    return hook
