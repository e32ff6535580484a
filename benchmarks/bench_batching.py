"""Length-grouped batches against random ones, and prediction sorted by length against file order.

    python benchmarks/bench_batching.py [--tasks mrpc stsb sst2] [--steps 16] [--precision auto]

Per task, on the real train/dev files with all-MiniLM-L6-v2, batch 32, length 128:
- padding ratio: tokens in the padded batches / real tokens, over one epoch (random vs grouped);
- training throughput in real tokens/s over ``steps`` steps of our loop (random vs grouped);
- one evaluation pass over the dev set: batched in file order vs sorted by length.
Writes bench_results/batching_<precision>.json (with the CPU) and prints a summary.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

from bench_trainer import ROOT, compose, machine
from ticket_ensembles.cli import user_errors_exit
from ticket_ensembles.data import example_lengths, load_text_task
from ticket_ensembles.models import load_model, load_tokenizer
from ticket_ensembles.tasks import get_task
from ticket_ensembles.trainer import finetune, predict, run_precision, train_loader


def padding_ratio(train_ds, lengths: list[int], cfg, seed: int = 0) -> float:
    """Padded tokens / real tokens over one epoch, in the training loader's batches (no collation)."""
    lengths = np.asarray(lengths)
    batches = [lengths[np.asarray(b)] for b in train_loader(train_ds, cfg, seed, None).batch_sampler]
    return float(sum(b.max() * len(b) for b in batches) / sum(b.sum() for b in batches))


def tokens_per_s(cfg, data, task, steps: int, seed: int) -> float:
    """Real (unpadded) tokens per second of training, over the first ``steps`` batches of an epoch."""
    loader = train_loader(data.train, cfg.trainer, seed, data.collate_fn)
    real = sum(int(b["attention_mask"].sum()) for _, b in zip(range(steps), loader))
    model = load_model(cfg.model, task, seed)
    per_epoch = math.ceil(len(data.train) / cfg.trainer.batch_size)
    result = finetune(model, data.train, cfg.trainer, seed, collate_fn=data.collate_fn, epochs=steps / per_epoch)
    return real / result.wall_time


def eval_pass(cfg, data, task, by_length: bool) -> float:
    """Seconds for one prediction pass over the dev set."""
    model = load_model(cfg.model, task, 0)
    start = time.perf_counter()
    predict(model, data.evals[task.eval_splits[0]], cfg.trainer, data.collate_fn, by_length=by_length)
    return time.perf_counter() - start


def bench_task(name: str, args) -> dict:
    cfgs = {g: compose([f"task={name}", "model=minilm_l6", f"trainer.precision={args.precision}",
                        "trainer.progress=false", f"trainer.group_by_length={g}"]) for g in ("false", "true")}
    task = get_task(name)
    data = load_text_task(task, cfgs["false"].data, load_tokenizer(cfgs["false"].model), 128)
    lengths = example_lengths(data.train)
    out = {"train_rows": len(lengths), "dev_rows": len(data.evals[task.eval_splits[0]]),
           "padding_ratio": {k: padding_ratio(data.train, lengths, cfgs[g].trainer) for k, g in (("random", "false"),
                                                                                    ("grouped", "true"))}}
    tps = {"random": [], "grouped": []}
    evals = {"file_order": [], "sorted": []}
    for rep in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        for key, g in (("random", "false"), ("grouped", "true")):
            tps[key].append(tokens_per_s(cfgs[g], data, task, args.steps, rep))
        for key, by_length in (("file_order", False), ("sorted", True)):
            evals[key].append(eval_pass(cfgs["false"], data, task, by_length))
    out["train_tokens_per_s"] = {k: float(np.median(v)) for k, v in tps.items()}
    out["eval_pass_s"] = {k: float(np.median(v)) for k, v in evals.items()}
    out["ratios"] = {"padding_random_over_grouped": out["padding_ratio"]["random"] / out["padding_ratio"]["grouped"],
                     "train_tokens_per_s_grouped_over_random": out["train_tokens_per_s"]["grouped"]
                     / out["train_tokens_per_s"]["random"],
                     "eval_speedup_sorted_over_file_order": out["eval_pass_s"]["file_order"]
                     / out["eval_pass_s"]["sorted"]}
    print(name, json.dumps(out), flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["mrpc", "stsb", "sst2"])
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    result = {"mode": "batching", "precision": args.precision, "steps": args.steps, "repeats": args.repeats,
              "tasks": {t: bench_task(t, args) for t in args.tasks}}
    result["precision_used"] = run_precision(compose([f"trainer.precision={args.precision}"]).trainer)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = machine()
    out = ROOT / "bench_results" / f"batching_{args.precision}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "tasks"}, indent=2))


if __name__ == "__main__":
    with user_errors_exit():
        main()
