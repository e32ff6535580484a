"""Our training loop against transformers' Trainer: throughput, and dev accuracy agreement.

Same model, data, batch size, sequence length, precision, optimizer and schedule for both.
  python benchmarks/bench_trainer.py throughput [--precision bf16] [--steps 20]
  python benchmarks/bench_trainer.py agreement  [--seeds 0 1 2] [--precision fp32]
Prints a markdown table and writes bench_results/trainer_<mode>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ticket_ensembles.cli import user_errors_exit
from ticket_ensembles.config import register_configs
from ticket_ensembles.data import load_text_task
from ticket_ensembles.models import load_model, load_tokenizer
from ticket_ensembles.scoring import member_metrics
from ticket_ensembles.tasks import get_task
from ticket_ensembles.trainer import finetune, predict

ROOT = Path(__file__).resolve().parents[1]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def run_ours(cfg, data, seed: int) -> tuple[float, torch.nn.Module]:
    model = load_model(cfg.model, get_task(cfg.task.name), seed)
    start = time.perf_counter()
    finetune(model, data.train, cfg.trainer, seed, collate_fn=data.collate_fn)
    return time.perf_counter() - start, model


def run_hf_trainer(cfg, data, seed: int) -> tuple[float, torch.nn.Module]:
    """transformers' Trainer with the same settings (linear decay to 0, no warmup, AdamW, clip 1.0)."""
    from transformers import Trainer, TrainingArguments

    t = cfg.trainer
    model = load_model(cfg.model, get_task(cfg.task.name), seed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=t.batch_size, num_train_epochs=t.epochs,
            learning_rate=t.lr, weight_decay=t.weight_decay, lr_scheduler_type="linear", warmup_steps=0,
            max_grad_norm=t.max_grad_norm, adam_epsilon=t.adam_eps, seed=seed, data_seed=seed,
            bf16=str(getattr(t.precision, "value", t.precision)) == "bf16", use_cpu=not torch.cuda.is_available(),
            report_to=[], save_strategy="no", eval_strategy="no", logging_strategy="no",
            disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=data.train, data_collator=data.collate_fn)
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start, trainer.model


def throughput(args) -> dict:
    n = args.steps * 32
    cfg = compose(["model=minilm_l6", f"data.max_train_samples={n}", "trainer.epochs=1",
                   f"trainer.precision={args.precision}", "trainer.progress=false"])
    data = load_text_task(get_task("mrpc"), cfg.data, load_tokenizer(cfg.model), cfg.trainer.max_length)
    run_ours(compose(["model=minilm_l6", "data.max_train_samples=64", "trainer.epochs=1", "trainer.progress=false"]), data, 0)  # warm-up
    results = {"ours": [], "hf_trainer": []}
    for rep in range(args.repeats):  # interleaved, so drift in machine load hits both alike
        results["ours"].append(n / run_ours(cfg, data, rep)[0])
        results["hf_trainer"].append(n / run_hf_trainer(cfg, data, rep)[0])
    med = {k: float(np.median(v)) for k, v in results.items()}
    return {"mode": "throughput", "precision": args.precision, "samples": n, "repeats": args.repeats,
            "samples_per_s": med, "ratio_ours_over_trainer": med["ours"] / med["hf_trainer"], "raw": results}


def agreement(args) -> dict:
    cfg = compose(["model=minilm_l6", "task=mrpc", f"trainer.precision={args.precision}", "trainer.progress=false"])
    task = get_task("mrpc")
    data = load_text_task(task, cfg.data, load_tokenizer(cfg.model), cfg.trainer.max_length)
    labels = data.labels("validation")
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        for name, fn in (("ours", run_ours), ("hf_trainer", run_hf_trainer)):
            wall, model = fn(cfg, data, seed)
            logits = predict(model, data.evals["validation"], cfg.trainer, data.collate_fn)
            row[name] = member_metrics(task, logits, labels)["accuracy"]
            row[f"{name}_s"] = round(wall, 1)
        rows.append(row)
        print(row, flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("ours", "hf_trainer")}
    return {"mode": "agreement", "precision": args.precision, "seeds": args.seeds, "rows": rows,
            "mean_accuracy": mean, "difference_points": mean["ours"] - mean["hf_trainer"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["throughput", "agreement"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result = (throughput if args.mode == "throughput" else agreement)(args)
    result["machine"] = {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    out = ROOT / "bench_results" / f"trainer_{args.mode}_{args.precision}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("raw", "rows")}, indent=2))


if __name__ == "__main__":
    with user_errors_exit():  # e.g. no GLUE_DIR and no hub: one line and exit 2, as train.py
        main()
