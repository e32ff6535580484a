"""Dynamic sparse training (FreeTickets): parameter selection, densities, engine, FLOPs."""
from .density import erk_densities, init_masks, layer_densities, uniform_densities
from .engine import SparseEngine, UpdateRule
from .flops import ForwardProfile, flops_report, profile_forward, sparse_forward_flops, training_flops
from .params import default_patterns, sparse_parameter_names

__all__ = [
    "erk_densities", "init_masks", "layer_densities", "uniform_densities", "SparseEngine", "UpdateRule",
    "ForwardProfile", "flops_report", "profile_forward", "sparse_forward_flops", "training_flops",
    "default_patterns", "sparse_parameter_names",
]
