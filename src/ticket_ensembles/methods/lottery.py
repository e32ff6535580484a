"""The lottery-ticket methods (METHODS.md 3-5): BASE-LT, ACTIVE-LT and RANDOM-LT.

IMP with rewinding: every round finetunes θ_s ⊙ m, removes the lowest-|w| prune_step share
of the ORIGINAL prunable count (ranked globally) and rewinds every weight, head included, to
θ_s; once prune_ratio is reached the member is a final finetune with the mask held fixed.
ACTIVE-LT and RANDOM-LT add an L1 regulariser in the pruning rounds, as a loss term
tau * lr_scale * ||θ ⊙ l||_1 (``method.l1_mode=loss``) or as a soft-threshold by lr_t * tau * l
after each step (``decoupled``); docs/lottery.md.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time

import torch
from omegaconf import OmegaConf

from .. import pruning, store
from ..errors import UserError
from ..fingerprint import describe, differences, member_settings
from ..masking import MaskedTraining
from ..ticket_work import RoundWork, chain_predecessors, file_digest, fingerprint
from . import register
from .base import Method, RunContext

log = logging.getLogger(__name__)
# settings an active_lt predecessor must share with the member that averages its mask
_CHAIN_KEYS = ("task", "model", "method")
# method.l1_tau=null picks these (docs/lottery.md: how they were chosen)
L1_TAU_DEFAULTS = {"loss": 1e-4, "decoupled": 4.0}
# loss mode: Adam's push is saturated long before this (docs/lottery.md), so a larger tau is a slip
LOSS_TAU_MAX = 10.0
# decoupled mode: below this the shrink per round (tau x the round's summed lr) moves no mask
DECOUPLED_TAU_MIN = 1e-2
# decoupled mode: the most one step may shrink a weight (tau x trainer.lr); 1e-2 is about the
# 17% quantile of |w| in all-MiniLM-L6-v2's prunable matrices, i.e. half the model in a few steps
DECOUPLED_STEP_MAX = 1e-2
# decoupled mode: a round that leaves more than this fraction of the penalised weights at exactly 0
# trained a model without most of them; the default tau was chosen for a push of about PUSH_AIM per
# round (the 20 % quantile of |w|; docs/lottery.md), which zeroes about a fifth of them
DECOUPLED_ZEROED_WARN = 0.5
DECOUPLED_PUSH_AIM = 1.2e-2


class LotteryTicket(Method):
    """One ticket member per seed; ``method.regularizer`` picks the L1 coefficient mask."""

    def __init__(self, cfg):
        super().__init__(cfg)
        pruning.pruning_schedule(cfg.method.prune_ratio, cfg.method.prune_step)  # bad values fail before loading
        chain_predecessors(int(cfg.seed), cfg.method.group_size)
        cfg.method.l1_tau = l1_tau(cfg.method, cfg.trainer.lr)  # config.yaml and the fingerprint record it

    def build(self, ctx: RunContext) -> None:
        if ctx.cfg.method.regularizer == "active":
            built = [self._ensure_member(ctx, pred) for pred in chain_predecessors(ctx.seed, ctx.cfg.method.group_size)]
            if any(built):
                ctx.started = time.perf_counter()  # this member's wall time excludes its predecessors'
        build_ticket(ctx)  # run.train holds this member's lock

    def _ensure_member(self, ctx: RunContext, seed: int) -> bool:
        """Build an earlier chain member that is missing (once, even with parallel runs)."""
        path = ctx.method_dir / store.member_name(seed)
        if store.is_complete(path):
            return False
        with store.member_lock(path):  # the lock run.train takes for a run of that seed
            if store.is_complete(path):  # another run built it while we waited
                return False
            log.info("active_lt seed %d needs seed %d of its chain first: building it now", ctx.seed, seed)
            with ctx.logger.for_members([(seed, None)], built_by=ctx.seed) as logger:  # its own W&B run
                build_ticket(dataclasses.replace(context_for_seed(ctx, seed), logger=logger))
            return True


@register("base_lt")
class BaseLT(LotteryTicket):
    """IMP with rewinding, no penalty."""


@register("active_lt")
class ActiveLT(LotteryTicket):
    """L1 coefficients: the mean final mask of the earlier seeds of the chain."""


@register("random_lt")
class RandomLT(LotteryTicket):
    """L1 coefficients: a Bernoulli mask drawn from the seed, P(0) = prune_ratio."""


def l1_tau(mcfg, lr: float) -> float:
    """method.l1_tau, or the default of method.l1_mode when null; refused outside the mode's range."""
    mode = str(getattr(mcfg.l1_mode, "value", mcfg.l1_mode))
    tau = L1_TAU_DEFAULTS[mode] if mcfg.get("l1_tau") is None else float(mcfg.l1_tau)
    if not tau >= 0.0 or tau == float("inf"):
        raise UserError(f"method.l1_tau={tau} must be a number >= 0")
    if mode == "loss" and tau > LOSS_TAU_MAX:
        raise UserError(f"method.l1_tau={tau} is far above l1_mode=loss's scale (default {L1_TAU_DEFAULTS['loss']}; "
                        "under Adam its push saturates near 1e-4): lower it, or use method.l1_mode=decoupled")
    if mode == "decoupled" and 0.0 < tau < DECOUPLED_TAU_MIN:
        raise UserError(f"method.l1_tau={tau} with l1_mode=decoupled shrinks a weight by tau x the summed lr of a "
                        f"round (~1e-7), which moves no mask: use a tau of order 1 (default "
                        f"{L1_TAU_DEFAULTS['decoupled']}) or method.l1_mode=loss")
    if mode == "decoupled" and tau * lr > DECOUPLED_STEP_MAX:
        raise UserError(f"method.l1_tau={tau} x trainer.lr={lr} shrinks every penalised weight by {tau * lr:.3g} per "
                        f"step, which zeroes most of the model in a few steps: keep tau x lr <= {DECOUPLED_STEP_MAX}")
    return tau


def context_for_seed(ctx: RunContext, seed: int) -> RunContext:
    """The same run settings for another seed (a missing predecessor), counting afresh."""
    cfg = copy.deepcopy(ctx.cfg)
    cfg.seed = seed
    cfg.overwrite = False
    return dataclasses.replace(ctx, cfg=cfg, started=time.perf_counter(), optimizer_steps=0, train_examples_seen=0)


def build_ticket(ctx: RunContext) -> None:
    """Prune θ_s in rounds (resuming after the last completed one), then the final finetune."""
    mcfg = ctx.cfg.method
    schedule = pruning.pruning_schedule(mcfg.prune_ratio, mcfg.prune_step)
    model = ctx.load_model(ctx.seed)  # on its device, before the snapshot and masks are made from it
    params = pruning.select_prunable(model, list(mcfg.prunable_patterns))
    theta = pruning.snapshot(model)
    coefficients, sources = coefficient_mask(ctx, params)
    work = RoundWork(ctx.method_dir, ctx.seed, fingerprint(ctx.cfg, *sources))
    done, masks = work.resume(params) or (0, pruning.full_masks(params))
    rounds = resume_costs(ctx, work, done)
    if done:
        log.info("seed %d: resuming after pruning round %d of %d", ctx.seed, done, len(schedule))
    pruning.rewind(model, theta, masks)
    for r in range(done, len(schedule)):
        rounds.append(pruning_round(ctx, model, params, masks, coefficients, r + 1))
        masks = pruning.prune_to_fraction(params, masks, schedule[r], tiebreak=theta)
        pruning.rewind(model, theta, masks)
        pruned, total = pruning.count_pruned(masks), pruning.count_total(masks)
        rounds[-1] |= {"pruned_weights": pruned, "sparsity": pruned / total}
        work.save(r + 1, masks, {"optimizer_steps": ctx.optimizer_steps, "train_examples_seen": ctx.train_examples_seen,
                                 "wall_time_s": time.perf_counter() - ctx.started, "rounds": rounds})
        log.info("seed %d round %d: %d of %d prunable weights pruned", ctx.seed, r + 1, pruned, total)
    with MaskedTraining(params, masks) as hooks:  # the mask held fixed, no penalty
        final = ctx.finetune(model, hooks=hooks, desc=f"seed {ctx.seed} final")
    write_ticket(ctx, model, masks, rounds, done, final.final_lr)
    work.clear()


def resume_costs(ctx: RunContext, work: RoundWork, done: int) -> list[dict]:
    """Count the steps, examples and wall time of the ``done`` rounds of earlier runs (requeues) as this
    member's own."""
    costs = work.costs(done) if done else {}
    if done and not costs:
        log.warning("seed %d: rounds 1-%d were saved without their costs; optimizer_steps and FLOPs count "
                    "only this run's training", ctx.seed, done)
    ctx.optimizer_steps += int(costs.get("optimizer_steps", 0))
    ctx.train_examples_seen += int(costs.get("train_examples_seen", 0))
    ctx.started -= float(costs.get("wall_time_s", 0.0))  # run.json's wall_time_s: every allocation's
    return list(costs.get("rounds", []))


def pruning_round(ctx: RunContext, model, params, masks, coefficients, round_no: int) -> dict:
    """One pruning-round finetune of θ_s ⊙ m (with the L1 penalty, if any); its run facts."""
    keep = masks if pruning.count_pruned(masks) else None
    mcfg = ctx.cfg.method
    with MaskedTraining(params, keep, coefficients, mcfg.l1_tau, mcfg.l1_mode) as hooks:
        result = ctx.finetune(model, hooks=hooks, epochs=ctx.cfg.method.epochs_per_round,
                              desc=f"seed {ctx.seed} round {round_no}")
        l1 = hooks.l1_facts()
    facts = {"round": round_no, "steps": result.steps, "final_lr": result.final_lr, "mean_loss": result.mean_loss,
             "sparsity_trained": pruning.count_pruned(masks) / pruning.count_total(masks), **l1}
    if l1:
        warn_overshoot(ctx.seed, round_no, mcfg.l1_tau, **l1)
    # the round's finetuned model before it is pruned and rewound: the ticket's score along the way
    # (round 1: the dense finetune at 0 %, round 2: 10 %, ...); predict leaves the RNG as it was
    facts["dev"] = round_dev_scores(ctx, model)
    log.info("seed %d round %d (%.0f %% sparse): dev %s", ctx.seed, round_no, 100 * facts["sparsity_trained"],
             ", ".join(f"{k} {v:.4f}" for k, v in facts["dev"].items() if "/" not in k))
    return facts


def warn_overshoot(seed: int, round_no: int, tau: float, l1_push: float, l1_zeroed: float) -> None:
    """Log how far a decoupled round's shrink reached; warn when it emptied most of the penalised weights."""
    summed_lr = l1_push / tau if tau else 0.0
    log.info("seed %d round %d: decoupled L1 push %.3g per round (tau %g x summed lr %.3g), %.1f %% of the "
             "penalised weights at exactly 0", seed, round_no, l1_push, tau, summed_lr, 100 * l1_zeroed)
    if l1_zeroed > DECOUPLED_ZEROED_WARN and summed_lr > 0:
        log.warning("seed %d round %d: the decoupled L1 shrink (tau %g x summed lr %.3g = %.3g) left %.0f %% of the "
                    "penalised weights at exactly 0, so this round trained a model without most of them and IMP "
                    "prunes among those zeros by |theta_s|; the default tau was chosen for a push of about %.2g per "
                    "round (docs/lottery.md): method.l1_tau=%.2g gives that push with this schedule",
                    seed, round_no, tau, summed_lr, l1_push, 100 * l1_zeroed, DECOUPLED_PUSH_AIM,
                    DECOUPLED_PUSH_AIM / summed_lr)


def round_dev_scores(ctx: RunContext, model) -> dict[str, float]:
    """The task's metrics and loss on every eval split (the first split's keys unprefixed)."""
    return {k: float(v) for k, v in ctx.dev_scores(model).items()}


def coefficient_mask(ctx: RunContext, params: dict[str, torch.Tensor]) -> tuple[pruning.Masks | None, list[str]]:
    """The L1 coefficient mask l_s (None: no penalty) and digests of what it was made from."""
    mcfg = ctx.cfg.method
    if mcfg.regularizer == "random":
        return pruning.random_coefficients(params, mcfg.prune_ratio, ctx.seed), []
    if mcfg.regularizer != "active":
        return None, []
    paths = [predecessor_mask(ctx, s) for s in chain_predecessors(ctx.seed, mcfg.group_size)]
    if not paths:
        return None, []  # the first seed of a chain has no penalty
    masks = [pruning.load_masks(p, params) for p in paths]
    return pruning.mean_of_masks(masks, params), [file_digest(p) for p in paths]


def predecessor_mask(ctx: RunContext, seed: int):
    """The final mask of an earlier chain member, refused if it was made with other settings."""
    folder = ctx.method_dir / store.member_name(seed)
    if not store.is_complete(folder):
        raise UserError(f"active_lt seed {ctx.seed} needs {folder} (an earlier member of its chain), which is "
                        f"missing: build it first (seed={seed})")
    problem = chain_mismatch(folder, ctx.cfg)
    if problem:
        raise UserError(f"{folder} (seed {seed}, an earlier member of seed {ctx.seed}'s active_lt chain) was built "
                        f"with other settings ({problem}): rebuild it (seed={seed} overwrite=true) or run with its "
                        "settings")
    return folder / "mask.npz"


def chain_mismatch(folder, cfg) -> str:
    """How an earlier chain member's settings differ from this run's ('' if they agree): its run.json
    settings against this run's (fingerprint.member_settings); a member written before settings were
    recorded is compared on task/model/method in its config.yaml."""
    recorded = store.member_settings_of(folder)
    if recorded is not None:
        ours = member_settings(cfg)
        keys = differences(recorded, ours, "lottery")
        if recorded.get("method.epochs_per_round") is not None and ours.get("method.epochs_per_round") is not None:
            keys = [k for k in keys if k != "trainer.epochs"]  # then only the final finetune: never the mask
        return describe(keys, recorded, ours)
    try:
        theirs = OmegaConf.masked_copy(OmegaConf.load(folder / "config.yaml"), list(_CHAIN_KEYS))
    except Exception as e:  # missing or damaged YAML
        raise UserError(f"{folder / 'config.yaml'} is unreadable ({type(e).__name__}): rebuild that member "
                        f"(overwrite=true)") from None
    if "l1_mode" not in theirs.get("method", {}):  # built before l1_mode existed: the loss mode
        theirs.method.l1_mode = "loss"
    ours = OmegaConf.masked_copy(cfg, list(_CHAIN_KEYS))
    if OmegaConf.to_container(theirs, resolve=True) != OmegaConf.to_container(ours, resolve=True, enum_to_str=True):
        return "task/model/method in its config.yaml"
    return ""


def write_ticket(ctx: RunContext, model, masks: pruning.Masks, rounds: list[dict], resumed_after: int,
                 final_lr: float) -> None:
    """The member: predictions, mask.npz, sparsity in metrics.json, round facts in run.json."""
    report = pruning.sparsity_report(masks)
    metrics = {"sparsity": report["sparsity"]}
    metrics |= {f"sparsity/{name}": value for name, value in report["sparsity_per_matrix"].items()}
    facts = {"prunable_weights": report["prunable_weights"], "pruned_weights": report["pruned_weights"],
             "rounds": rounds, "resumed_after_round": resumed_after, "final_lr": final_lr,
             "regularizer": str(getattr(ctx.cfg.method.regularizer, "value", ctx.cfg.method.regularizer))}
    if facts["regularizer"] == "active":
        facts["chain_predecessors"] = chain_predecessors(ctx.seed, ctx.cfg.method.group_size)
    ctx.write_member(model, extra=facts, extra_metrics=metrics,
                     write_files=lambda folder: pruning.save_masks(folder / "mask.npz", masks))
