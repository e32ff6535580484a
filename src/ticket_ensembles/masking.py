"""Trainer hooks for a fixed-mask finetune: pruned weights stay exactly zero, plus an
optional L1 regulariser (active_lt / random_lt) in one of two modes (docs/lottery.md):

- ``loss``: tau * lr_scale * ||theta ⊙ l||_1 added to the loss (the paper's text);
- ``decoupled``: after each optimizer step, w <- sign(w) * max(|w| - lr_t * tau * l, 0).

Use as a context manager around one finetune::

    with MaskedTraining(params, masks, coefficients, tau, mode) as hooks:
        finetune(model, train_ds, cfg, seed, hooks=hooks)
"""
from __future__ import annotations

import torch

from .pruning import Masks, apply_masks


class SoftThreshold:
    """Decoupled L1: w <- sign(w) * max(|w| - lr * tau * l, 0) on a list of weights, in place.

    Fused ``torch._foreach`` ops over all matrices at once, into buffers kept across steps; a
    zero weight stays exactly zero (its sign is 0).
    """

    def __init__(self, params: list[torch.Tensor], coefficients: list[torch.Tensor], tau: float):
        self.params, self.coefficients, self.tau = params, coefficients, float(tau)
        self._buffers = [torch.empty_like(p, requires_grad=False) for p in params]
        self.pushed = 0.0  # tau x the summed lr so far: the most a weight with l = 1 has lost

    @torch.no_grad()
    def __call__(self, lr: float) -> None:
        amount = float(lr) * self.tau
        if amount <= 0.0:
            return
        soft_threshold_(self.params, self.coefficients, amount, self._buffers)
        self.pushed += amount


@torch.no_grad()
def soft_threshold_(params: list[torch.Tensor], coefficients: list[torch.Tensor], amount: float,
                    buffers: list[torch.Tensor] | None = None) -> None:
    """params <- sign(params) * max(|params| - amount * coefficients, 0), fused over the lists."""
    buffers = [torch.empty_like(p) for p in params] if buffers is None else buffers
    torch._foreach_copy_(buffers, params)
    torch._foreach_abs_(buffers)
    torch._foreach_sub_(buffers, coefficients, alpha=amount)
    torch._foreach_clamp_min_(buffers, 0.0)
    torch._foreach_sign_(params)
    torch._foreach_mul_(params, buffers)


class MaskedOptimizer:
    """Wraps an optimizer: after every step, soft-threshold (decoupled L1, if any) and multiply
    the prunable weights by their masks.

    The multiply undoes anything the step did to a pruned weight, AdamW's decoupled weight decay
    and momentum included, with one fused in-place multiply per step. The soft-threshold uses the
    lr of the step just taken (the trainer steps the scheduler afterwards), so it decays with it.
    """

    # fp16: GradScaler calls step() only for finite gradients (a fused optimizer's own skipping would
    # still run the re-masking and the shrink after a skipped step)
    _step_supports_amp_scaling = False

    def __init__(self, optimizer, params: list[torch.Tensor], factors: list[torch.Tensor],
                 shrink: SoftThreshold | None = None):
        self.optimizer, self._params, self._factors, self._shrink = optimizer, params, factors, shrink

    def step(self, *args, **kwargs):
        out = self.optimizer.step(*args, **kwargs)
        with torch.no_grad():
            if self._shrink is not None:
                self._shrink(self.optimizer.param_groups[0]["lr"])
            if self._params:
                torch._foreach_mul_(self._params, self._factors)
        return out

    def __getattr__(self, name):  # zero_grad, param_groups, state_dict ... of the real optimizer
        return getattr(self.optimizer, name)


class MaskedTraining:
    """Hooks object for ``trainer.finetune``: keeps a mask fixed and adds an optional L1 regulariser.

    Gradients of pruned weights are zeroed as they are accumulated, so gradient clipping and
    Adam's moments see the subnetwork only (as with ``torch.nn.utils.prune``), and the wrapped
    optimizer re-zeroes the weights after each step.
    """

    def __init__(self, params: dict[str, torch.Tensor], masks: Masks | None = None,
                 coefficients: Masks | None = None, tau: float = 0.0, mode: str = "loss"):
        self.params = params
        self.masks = masks
        self.coefficients = coefficients if coefficients and tau > 0 else None
        self.tau = float(tau)
        self.mode = str(getattr(mode, "value", mode))
        if self.mode not in ("loss", "decoupled"):
            raise ValueError(f"unknown L1 mode {self.mode!r}: use loss or decoupled")
        self._handles: list = []
        self._masked: list[torch.Tensor] = []
        self._factors: list[torch.Tensor] = []
        self._shrink: SoftThreshold | None = None
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
            penalised = [self.params[n] for n in names]
            coef_list = [self.coefficients[n] for n in names]
            if self.mode == "decoupled":
                self._shrink = SoftThreshold(penalised, coef_list, self.tau)
            else:
                self._penalised, self._coef_list = penalised, coef_list
                self._signed = [torch.empty_like(p, requires_grad=False) for p in penalised]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._signed = []
        self._shrink = None

    @torch.no_grad()
    def l1_facts(self) -> dict[str, float]:
        """Decoupled mode, after the finetune: ``l1_push``, tau x the summed lr (what a weight with l = 1
        lost at most), and ``l1_zeroed``, the fraction of the penalised (l > 0), unpruned weights that
        are now exactly 0. Empty in the loss mode and without a penalty."""
        if self._shrink is None:
            return {}
        zero = total = 0
        for name, coef in self.coefficients.items():
            p = self.params[name]
            live = coef.to(p.device) > 0
            if self.masks:
                live &= self.masks[name].to(device=p.device, dtype=torch.bool)
            total += int(live.sum())
            zero += int((live & (p == 0)).sum())
        return {"l1_push": self._shrink.pushed, "l1_zeroed": zero / total if total else 0.0}

    def wrap_optimizer(self, optimizer):
        if not self._factors and self._shrink is None:
            return optimizer
        return MaskedOptimizer(optimizer, self._masked, self._factors, self._shrink)

    def extra_loss(self, model, lr_scale: float) -> torch.Tensor | None:
        """tau * lr_scale * sum |theta| * l over the penalised weights (None when off or decoupled)."""
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
