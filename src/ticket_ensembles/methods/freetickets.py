"""FreeTickets (METHODS.md, Paper B): ensembles of dynamic-sparse-training subnetworks.

``variant=dst``: one sparse run per seed, one member ``seed_<s>`` in ``freetickets_dst``.
``variant=edst``: one run per seed: an exploration phase, then ``num_tickets`` refinement
phases, each ending with a member ``seed_<s>_ticket_<t>`` in ``freetickets_edst``. As in the
reference (main_EDST.py lines 313-321), the first ticket continues from exploration and every
later one starts with a large prune-and-regrow jump: M - 1 jumps. All phases draw from one
data stream (shuffle and augmentation continue, seeded once by the run's seed), as the
reference's one DataLoader does. A member is the phase's last model or, with
``method.member_checkpoint=best_val``, its epoch end with the best validation accuracy.
Every member stores its mask (``mask.npz``) and its sparse FLOPs (``run.json``);
RunContext.write_member adds ``ood_<name>.npz`` when ``data.ood`` names a set.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
from dataclasses import dataclass, field

import torch
from omegaconf import OmegaConf

from .. import maskio, store
from ..errors import UserError
from ..sparse import (SparseEngine, UpdateRule, default_patterns, flops_report, init_masks, layer_densities,
                      profile_forward, sparse_parameter_names)
from ..sparse.flops import examples_in_steps, finetune_examples
from . import register
from .base import Method, RunContext

log = logging.getLogger(__name__)


def _value(x):
    """The plain value of a config enum (str enums print their class name on Python 3.11)."""
    return getattr(x, "value", x)


@dataclass
class Phase:
    """One call of the training loop with the same sparse engine."""

    epochs: float
    overrides: dict = field(default_factory=dict)  # trainer fields for this phase
    jump: bool = False  # starts with a large prune-and-regrow (EDST refinement)
    writes: bool = True  # ends with a member
    ticket: int | None = None
    steps: int = 0


@register("freetickets")
class FreeTickets(Method):
    """DST / EDST ensembles (Liu et al., ICLR 2022) over the one training loop."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.variant = _value(cfg.method.variant)
        if self.variant == "edst" and int(cfg.method.num_tickets) < 1:
            raise UserError(f"method.num_tickets={cfg.method.num_tickets}: EDST needs at least 1 ticket")

    @property
    def default_folder(self) -> str:
        return f"freetickets_{self.variant}"

    def member_keys(self) -> list[tuple[int, int | None]]:
        seed = int(self.cfg.seed)
        if self.variant == "dst":
            return [(seed, None)]
        return [(seed, t) for t in range(int(self.cfg.method.num_tickets))]

    def phases(self, ctx: RunContext) -> list[Phase]:
        """DST: one phase of trainer.epochs; EDST: exploration + one refinement per ticket, each
        but the first starting with a jump."""
        m = ctx.cfg.method
        if self.variant == "dst":
            phases = [Phase(float(ctx.cfg.trainer.epochs))]
        else:
            explore = OmegaConf.to_container(m.exploration_trainer)
            refine = OmegaConf.to_container(m.refinement_trainer)
            phases = [Phase(float(m.exploration_epochs), explore, writes=False)]
            first = bool(m.jump_before_first_ticket)
            phases += [Phase(float(m.refinement_epochs), refine, jump=t > 0 or first, ticket=t)
                       for t in range(m.num_tickets)]
        n = len(ctx.data.train)
        for p in phases:
            with trainer_overrides(ctx, p.overrides):
                p.steps = max(1, math.ceil(p.epochs * math.ceil(n / ctx.cfg.trainer.batch_size)))
        return phases

    def build(self, ctx: RunContext) -> None:
        if ctx.task.modality == "image" and ctx.cfg.trainer.optimizer == "adamw":
            log.warning("image task trained with AdamW: the paper's setting is the task's default SGD "
                        "recipe (unset trainer.optimizer) or experiment=freetickets_%s", ctx.task.name)
        phases = self.phases(ctx)
        schedule = topology_schedule(ctx, phases)
        model = ctx.load_model(ctx.seed)  # on its device before the engine's masks are made from it
        engine = build_engine(model, ctx, total_steps=sum(p.steps for p in phases))
        flops = plan_flops(model, ctx, engine, phases)
        choice = MemberChoice(ctx, model, engine)
        stream = torch.Generator().manual_seed(ctx.seed)  # one shuffle stream over every phase
        torch.manual_seed(ctx.seed)  # and one augmentation stream (the trainer does not reseed it)
        try:
            for i, phase in enumerate(phases):
                engine.phase_end = engine.steps + phase.steps
                if phase.jump:
                    engine.schedule_jump(float(ctx.cfg.method.large_death_rate))
                desc = f"seed {ctx.seed} " + ("dst" if self.variant == "dst" else f"edst phase {i}")
                choice.start()
                with trainer_overrides(ctx, phase.overrides):
                    ctx.finetune(model, hooks=engine, epochs=phase.epochs, desc=desc,
                                 on_epoch_end=choice.epoch_end, data_generator=stream)
                    choice.epoch_end()  # the phase's last model is a candidate too
                if phase.writes:
                    with choice.chosen() as facts:
                        write_ticket(ctx, model, engine, phase.ticket, flops, facts | schedule)
        finally:
            engine.close()


class MemberChoice:
    """Which model of a phase becomes the member: its last, or (best_val) the epoch end with the
    best validation accuracy, the first of equals, as the reference keeps it (main_EDST.py 303-311)."""

    def __init__(self, ctx: RunContext, model, engine: SparseEngine):
        self.kind = _value(ctx.cfg.method.member_checkpoint)
        if self.kind == "best_val" and ctx.data.validation is None:
            raise UserError("method.member_checkpoint=best_val needs a validation split: set "
                            "data.validation_fraction (the reference holds out 0.1)")
        self.ctx, self.model, self.engine = ctx, model, engine
        self.best: tuple | None = None
        self.history: list[list] = []

    def start(self) -> None:
        self.best, self.history = None, []

    def epoch_end(self, epoch: int | None = None) -> None:
        """Score the current model on the validation split; keep a copy if it is the best so far."""
        if self.ctx.data.validation is None or (self.kind == "last" and epoch is not None):
            return  # "last" scores only the phase's last model (a fact for run.json)
        step = self.engine.steps
        if self.history and self.history[-1][0] == step:
            return  # the last epoch end is also the phase end
        acc = self._validation_accuracy()
        self.history.append([step, acc])
        if self.kind == "best_val" and (self.best is None or acc > self.best[1]):
            self.best = (step, acc, self._snapshot())

    def _validation_accuracy(self) -> float:
        from ..trainer import predict

        val = self.ctx.data.validation
        logits = predict(self.model, val, self.ctx.cfg.trainer, self.ctx.data.collate_fn)  # RNG untouched
        return float((logits.argmax(-1) == val["labels"]).mean())

    def _snapshot(self) -> tuple[dict, dict]:
        weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return weights, {n: m.clone() for n, m in self.engine.masks.items()}

    def _restore(self, snapshot: tuple[dict, dict]) -> None:
        weights, masks = snapshot
        self.model.load_state_dict(weights)
        for n, m in masks.items():
            self.engine.masks[n].copy_(m)

    @contextlib.contextmanager
    def chosen(self):
        """Hold the chosen model (and its mask) while the member is written, then the last again."""
        last_step = self.engine.steps
        step, acc = (self.best[0], self.best[1]) if self.best else (last_step, None)
        if acc is None and self.history and self.history[-1][0] == last_step:
            acc = self.history[-1][1]
        facts = {"member_checkpoint": self.kind, "member_step": step, "validation_accuracy": acc,
                 "validation_history": self.history}
        if step == last_step:
            yield facts
            return
        current = self._snapshot()
        self._restore(self.best[2])
        try:
            yield facts
        finally:
            self._restore(current)


@contextlib.contextmanager
def trainer_overrides(ctx: RunContext, overrides: dict):
    """Train one phase with some trainer fields changed (e.g. EDST's refinement lr)."""
    if not overrides:
        yield
        return
    original = copy.deepcopy(ctx.cfg.trainer)  # assignment below updates the node in place
    try:
        merged = OmegaConf.merge(original, overrides)
    except Exception as e:
        raise UserError(f"method phase trainer overrides {overrides} do not fit the trainer config "
                        f"({type(e).__name__}): use trainer field names such as lr, lr_schedule") from None
    ctx.cfg.trainer = merged
    try:
        yield
    finally:
        ctx.cfg.trainer = original


def topology_schedule(ctx: RunContext, phases: list[Phase]) -> dict:
    """The scheduled topology updates the run will make (run.json); a warning, first thing, when there are
    none although method.update_frequency asks for them (the run is then one fixed sparse mask)."""
    frequency = int(ctx.cfg.method.update_frequency)
    scheduled, start = 0, 0
    for p in phases:  # steps s in (start, end) with s % frequency == 0: never a phase's last step
        end = start + p.steps
        scheduled += (end - 1) // frequency - start // frequency if frequency > 0 else 0
        start = end
    out = {"scheduled_topology_updates": scheduled}
    if frequency > 0 and scheduled == 0:
        jumps = sum(p.jump for p in phases)
        message = (f"method.update_frequency={frequency} but this run makes {start} optimizer steps, so no "
                   "scheduled topology update happens" + (f" (only EDST's {jumps} jump(s))" if jumps else "") +
                   ": the mask stays as initialised, which is not dynamic sparse training; set "
                   f"method.update_frequency below the run's {start} steps, or train longer")
        log.warning("seed %d: %s", ctx.seed, message)
        out["warnings"] = [message]
    return out


def build_engine(model: torch.nn.Module, ctx: RunContext, total_steps: int) -> SparseEngine:
    """Masks by ERK/uniform densities from pretrained magnitudes or at random, and the DST rule."""
    m = ctx.cfg.method
    pretrained = ctx.cfg.model.kind == "transformer"
    density = m.density if m.density is not None else (m.text_density if pretrained else m.image_density)
    init = _value(m.sparse_init) or ("magnitude" if pretrained else "random")
    try:
        patterns = list(m.sparse_patterns) if m.sparse_patterns else default_patterns(ctx.cfg.model.kind)
        params = dict(model.named_parameters())
        weights = {n: params[n] for n in sparse_parameter_names(model, patterns)}
        shapes = {n: tuple(w.shape) for n, w in weights.items()}
        masks = init_masks(weights, layer_densities(_value(m.distribution), shapes, float(density)), init,
                           torch.Generator().manual_seed(ctx.seed))
        rule = UpdateRule(float(m.death_rate), _value(m.death_rate_schedule), _value(m.growth),
                          int(m.update_frequency), total_steps)
    except ValueError as e:
        raise UserError(str(e)) from None
    return SparseEngine(model, masks, rule, seed=ctx.seed, regrown_momentum=_value(m.regrown_momentum),
                        dense_layers=_value(m.get("dense_layers", "skip")))


def dense_grad_steps(phases: list[Phase], frequency: int) -> list[int]:
    """Per phase, the topology updates (scheduled + jump) that need a dense gradient (RigL)."""
    counts, start = [], 0
    for p in phases:
        end = start + p.steps
        scheduled = (end - 1) // frequency - start // frequency if frequency > 0 else 0
        first_is_scheduled = frequency > 0 and (start + 1) % frequency == 0 and start + 1 < end
        counts.append(scheduled + int(p.jump and not first_is_scheduled))
        start = end
    return counts


def plan_flops(model, ctx: RunContext, engine: SparseEngine, phases: list[Phase]) -> dict:
    """The run's FLOPs from layer shapes, densities and the planned steps (see sparse/flops.py)."""
    n, trainer = len(ctx.data.train), ctx.cfg.trainer
    profile = profile_forward(model, ctx.example_batch(model))
    run_examples, grad_examples = 0, 0
    updates = dense_grad_steps(phases, engine.rule.update_frequency)
    for p, k in zip(phases, updates):
        with trainer_overrides(ctx, p.overrides):
            run_examples += examples_in_steps(n, ctx.cfg.trainer.batch_size, p.steps)
            grad_examples += k * min(n, ctx.cfg.trainer.batch_size) if engine.rule.growth == "rigl" else 0
    ref_epochs = ctx.cfg.method.dense_reference_epochs or trainer.epochs
    members = sum(p.writes for p in phases)
    report = flops_report(profile, engine.layer_densities(), run_examples, grad_examples, members,
                          finetune_examples(n, trainer.batch_size, float(ref_epochs)))
    return report | {"planned_dense_grad_steps": sum(updates) if engine.rule.growth == "rigl" else 0}


def write_ticket(ctx: RunContext, model, engine: SparseEngine, ticket: int | None, flops: dict,
                 checkpoint: dict) -> None:
    """One member: predictions (and OoD logits), mask.npz, and the sparse run facts in run.json
    (``member_step``: the optimizer step of the stored model)."""
    final = ctx.method_dir / store.member_name(ctx.seed, ticket)
    if store.is_complete(final) and not ctx.cfg.overwrite:  # a relaunch after a crash between tickets
        log.info("%s is already complete (same seed, same run): kept", final)
        return

    def files(folder):
        maskio.save_mask(folder / "mask.npz", engine.masks_numpy())

    extra = {
        "variant": _value(ctx.cfg.method.variant),
        "density": engine.global_density(),
        "layer_densities": engine.layer_densities(),
        "sparse_parameters": sum(m.numel() for m in engine.masks.values()),
        "topology_updates": sum(h["step"] <= checkpoint["member_step"] for h in engine.history),
        "dense_grad_steps": engine.dense_grad_steps,
        "flops": flops,
        "death_rate_schedule": _value(ctx.cfg.method.death_rate_schedule),
        "jumps": [h["step"] for h in engine.history if h.get("jump")],
        **checkpoint,
    }
    ctx.write_member(model, ticket=ticket, extra=extra, write_files=files)
