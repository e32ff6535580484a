"""Analytic FLOPs from layer shapes and densities (the paper's training/inference cost).

Convention: one multiply-add = 2 FLOPs. A Linear/Conv weight W costs 2 * W.numel() * P
forward FLOPs per example, P = output positions (tokens, or output pixels of a conv); a
sparse layer costs its density times that. Transformers add the two attention products
(QK^T and AV, 4 * L^2 * hidden per layer), which stay dense. Biases, normalisation and
activations are left out (a few percent at most, identical for sparse and dense).
Training: backward = 2 x forward (activation grads + weight grads), so a sparse step costs
3 f_S per example; at a RigL regrowth step the weight gradients of sparse layers are dense,
which adds (1 - d_l) F_l per example of that batch (as RigL, Evci et al. 2020, counts it).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .params import SPARSE_MODULE_TYPES


@dataclass(frozen=True)
class ForwardProfile:
    """Dense forward FLOPs per example: per weight layer (by parameter name), and the rest."""

    layer_flops: dict[str, float]
    other_flops: float = 0.0

    @property
    def dense(self) -> float:
        return sum(self.layer_flops.values()) + self.other_flops


@torch.no_grad()
def profile_forward(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> ForwardProfile:
    """Run one forward pass on `batch` and count FLOPs per example from the layer shapes."""
    batch_size = next(iter(batch.values())).shape[0]
    flops: dict[str, float] = {}
    handles = []
    for mod_name, module in model.named_modules():
        if isinstance(module, SPARSE_MODULE_TYPES):
            handles.append(module.register_forward_hook(_counter(f"{mod_name}.weight", flops, batch_size)))
    was_training = model.training
    model.eval()
    try:
        model(**{k: v for k, v in batch.items() if k != "labels"})
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return ForwardProfile(flops, attention_flops(model, batch))


def _counter(name: str, flops: dict[str, float], batch_size: int):
    def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        out_channels = module.weight.shape[0]
        positions = output.numel() / (batch_size * out_channels)
        flops[name] = flops.get(name, 0.0) + 2.0 * module.weight.numel() * positions
    return hook


def attention_flops(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> float:
    """QK^T and AV of a transformer encoder per example (0 for models without attention)."""
    config = getattr(model, "config", None)
    ids = batch.get("input_ids")
    if config is None or ids is None or not hasattr(config, "num_hidden_layers"):
        return 0.0
    seq_len = ids.shape[-1]
    return 4.0 * seq_len * seq_len * config.hidden_size * config.num_hidden_layers


def sparse_forward_flops(profile: ForwardProfile, densities: Mapping[str, float]) -> float:
    """Forward FLOPs per example with the given per-layer densities (others dense)."""
    return profile.other_flops + sum(f * densities.get(n, 1.0) for n, f in profile.layer_flops.items())


def training_flops(profile: ForwardProfile, densities: Mapping[str, float], examples: float,
                   dense_grad_examples: float = 0.0) -> float:
    """FLOPs of training on `examples` examples, `dense_grad_examples` of them at steps that
    needed dense weight gradients (RigL regrowth)."""
    extra = sum(f * (1.0 - densities.get(n, 1.0)) for n, f in profile.layer_flops.items())
    return 3.0 * sparse_forward_flops(profile, densities) * examples + extra * dense_grad_examples


def examples_in_steps(n: int, batch_size: int, steps: int) -> int:
    """Training examples seen in `steps` optimizer steps over a shuffled set of `n` (last batch short)."""
    full, rest = divmod(steps, math.ceil(n / batch_size))
    return full * n + min(rest * batch_size, n)


def finetune_examples(n: int, batch_size: int, epochs: float) -> int:
    """Training examples of one finetune of `epochs` over `n` examples (the trainer's step count)."""
    return examples_in_steps(n, batch_size, max(1, math.ceil(epochs * math.ceil(n / batch_size))))


def flops_report(profile: ForwardProfile, densities: Mapping[str, float], run_examples: float,
                 dense_grad_examples: float, members_per_run: int, dense_reference_examples: float) -> dict:
    """The `flops` entry of a member's run.json; `_rel` values are relative to ONE dense model
    (inference: one dense forward; training: a dense run over `dense_reference_examples`)."""
    inference = sparse_forward_flops(profile, densities)
    run = training_flops(profile, densities, run_examples, dense_grad_examples)
    dense_train = 3.0 * profile.dense * dense_reference_examples
    member = run / members_per_run  # EDST: the run's cost shared by its tickets
    return {
        "inference_per_example": inference,
        "inference_per_example_dense": profile.dense,
        "inference_rel_dense": inference / profile.dense,
        "train_run": run,
        "train_member": member,
        "train_dense_reference": dense_train,
        "train_member_rel_dense": member / dense_train,
        "train_run_rel_dense": run / dense_train,
        "members_per_run": members_per_run,
        "run_examples": run_examples,
        "dense_grad_examples": dense_grad_examples,
    }
