"""Cost of a ticket's training step against a dense one (goals: <= 1.05x masked, <= 1.10x with L1).

MiniLM-L6 (all 6 layers), one real MRPC batch of 32 padded to 128 tokens, the trainer's AdamW
(weight decay on) and clipping. Four models step in turn, so drift in machine load hits all:
  dense   plain step
  masked  30% of the prunable weights pruned: gradient masks + re-zeroing after every step
  l1      masked, plus the L1 penalty tau * ||theta ⊙ l||_1 (random_lt coefficients; l1_mode=loss)
  decoupled  masked, plus the decoupled L1 soft-threshold after each step (l1_mode=decoupled)
  python benchmarks/bench_masking.py [--steps 15] [--warmup 3] [--threads N]
On a shared machine whole-step medians are noisy, so the extra work alone (the gradient
masks and re-zeroing; the penalty's forward and backward) is also timed in isolation and
shown as a share of the dense step (for decoupled: the fused soft-threshold). Prints a markdown
table, writes bench_results/masking.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from ticket_ensembles import pruning
from ticket_ensembles.cli import user_errors_exit
from ticket_ensembles.config import register_configs
from ticket_ensembles.data import load_raw_glue
from ticket_ensembles.masking import MaskedTraining, SoftThreshold
from ticket_ensembles.methods.lottery import L1_TAU_DEFAULTS
from ticket_ensembles.models import load_model, load_tokenizer
from ticket_ensembles.tasks import get_task
from ticket_ensembles.trainer import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"dense": None, "masked": 1.05, "l1": 1.10, "decoupled": 1.10}
TAU = {"l1": L1_TAU_DEFAULTS["loss"], "decoupled": L1_TAU_DEFAULTS["decoupled"]}


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def real_batch(cfg, task, size: int) -> dict[str, torch.Tensor]:
    raw = load_raw_glue(task, cfg.data.glue_dir, cfg.data.hub_id)["train"][:size]
    enc = load_tokenizer(cfg.model)(*(raw[k] for k in task.text_keys), truncation=True, padding="max_length",
                                    max_length=cfg.trainer.max_length, return_tensors="pt")
    return {**enc, "labels": torch.tensor(raw["label"])}


def make_stepper(cfg, task, mode: str, stack: contextlib.ExitStack):
    """A closure doing one full training step of the trainer's kind for ``mode``."""
    model = load_model(cfg.model, task, seed=0).train()
    optimizer = build_optimizer(model, cfg.trainer)
    stepper, hooks = optimizer, None
    if mode != "dense":
        params = pruning.select_prunable(model, list(cfg.method.prunable_patterns))
        masks = pruning.prune_to_fraction(params, pruning.full_masks(params), cfg.method.prune_ratio)
        coef = pruning.random_coefficients(params, cfg.method.prune_ratio, 0) if mode in TAU else None
        l1_mode = "decoupled" if mode == "decoupled" else "loss"
        hooks = stack.enter_context(MaskedTraining(params, masks, coef, TAU.get(mode, 0.0), l1_mode))
        stepper = hooks.wrap_optimizer(optimizer)

    def step(batch) -> None:
        loss = model(**batch).loss
        if hooks is not None and (penalty := hooks.extra_loss(model, 0.5)) is not None:
            loss = loss + penalty
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.trainer.max_grad_norm)
        stepper.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def extra_work_seconds(cfg, task, repeats: int = 20) -> dict[str, float]:
    """Median time of what a masked / L1 step adds to a dense one, measured alone."""
    model = load_model(cfg.model, task, seed=0).train()
    params = pruning.select_prunable(model, list(cfg.method.prunable_patterns))
    masks = pruning.prune_to_fraction(params, pruning.full_masks(params), cfg.method.prune_ratio)
    coef = pruning.random_coefficients(params, cfg.method.prune_ratio, 0)
    plist = list(params.values())
    factors = [masks[n].float() for n in params]
    for p in plist:
        p.grad = torch.randn_like(p)
    out = {"masked": [], "l1": [], "decoupled": []}
    shrink = SoftThreshold(plist, [coef[n] for n in params], TAU["decoupled"])
    with MaskedTraining(params, masks, coef, TAU["l1"]) as hooks:
        for _ in range(repeats):
            start = time.perf_counter()
            with torch.no_grad():  # what the gradient hooks and the wrapped step do
                for p, f in zip(plist, factors):
                    p.grad.mul_(f)
                torch._foreach_mul_(plist, factors)
            out["masked"].append(time.perf_counter() - start)
            start = time.perf_counter()
            hooks.extra_loss(model, 0.5).backward()
            out["l1"].append(time.perf_counter() - start + out["masked"][-1])
            start = time.perf_counter()
            shrink(cfg.trainer.lr)  # the fused soft-threshold over every prunable matrix
            out["decoupled"].append(time.perf_counter() - start + out["masked"][-1])
    return {k: float(np.median(v)) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = compose(["model=minilm_l6", "method=random_lt", "trainer.weight_decay=0.01"])
    task = get_task("mrpc")
    batch = real_batch(cfg, task, cfg.trainer.batch_size)
    times: dict[str, list[float]] = {m: [] for m in GOALS}
    with contextlib.ExitStack() as stack:
        steppers = {m: make_stepper(cfg, task, m, stack) for m in GOALS}
        for i in range(args.warmup + args.steps):
            for mode, step in steppers.items():  # interleaved
                start = time.perf_counter()
                step(batch)
                if i >= args.warmup:
                    times[mode].append(time.perf_counter() - start)
    report(times, extra_work_seconds(cfg, task), args, cfg)


def report(times: dict[str, list[float]], extra: dict[str, float], args, cfg) -> None:
    med = {m: float(np.median(t)) for m, t in times.items()}
    rows = ["| step | median ms | x dense | extra work alone, ms | 1 + extra / dense | goal |",
            "|---|---|---|---|---|---|"]
    for mode, goal in GOALS.items():
        ratio = med[mode] / med["dense"]
        added = extra.get(mode, 0.0)
        rows.append(f"| {mode} | {1000 * med[mode]:.1f} | {ratio:.3f} | {1000 * added:.1f} | "
                    f"{1 + added / med['dense']:.3f} | {'' if goal is None else f'<= {goal:.2f}'} |")
    print(f"minilm_l6, batch {cfg.trainer.batch_size} x {cfg.trainer.max_length} tokens, {args.steps} steps "
          f"after {args.warmup} warm-up, {torch.get_num_threads()} threads\n" + "\n".join(rows))
    out = ROOT / "bench_results" / "masking.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"median_s": med, "ratio": {m: med[m] / med["dense"] for m in med},
                               "extra_work_s": extra,
                               "threads": torch.get_num_threads(), "raw_s": times}, indent=2))


if __name__ == "__main__":
    with user_errors_exit():  # e.g. no GLUE_DIR and no hub: one line and exit 2, as train.py
        main()
