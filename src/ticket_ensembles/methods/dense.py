"""The two dense methods: BASELINE and BAGGING (METHODS.md methods 1-2)."""
from __future__ import annotations

from ..data import bagging_subset
from . import register
from .base import Method, RunContext


@register("baseline")
class Baseline(Method):
    """FINE(θ_s, s): a dense finetune; one member per seed."""

    def build(self, ctx: RunContext) -> None:
        model = ctx.load_model(ctx.seed)
        ctx.finetune(model, desc=f"seed {ctx.seed}")
        ctx.write_member(model)


@register("bagging")
class Bagging(Method):
    """A dense finetune on a random subset_ratio share of the training set (no replacement)."""

    def build(self, ctx: RunContext) -> None:
        idx = bagging_subset(len(ctx.data.train), self.cfg.method.subset_ratio, ctx.seed)
        model = ctx.load_model(ctx.seed)
        ctx.finetune(model, train_ds=ctx.data.train.select(idx), desc=f"seed {ctx.seed}")
        ctx.write_member(model, extra={"bagging_subset_size": int(len(idx))})
