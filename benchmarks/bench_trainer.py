"""Our training loop against transformers' Trainer (throughput, dev accuracy), and length-grouped
batches against random ones (dev accuracy).

Same model, data, batch size, sequence length, precision, optimizer and schedule for both sides.
  python benchmarks/bench_trainer.py throughput [--precision auto] [--steps 28]
  python benchmarks/bench_trainer.py agreement  [--compare grouping|trainer] [--layers 3] [--seeds 0 1 2]
                                               [--override trainer.epochs=1 trainer.lr=2e-4] [--jobs 2]
Prints a markdown-ready summary and writes bench_results/trainer_<mode>_....json (with the CPU).
"""
from __future__ import annotations

import argparse
import json
import math
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
from ticket_ensembles.trainer import finetune, predict, run_precision

ROOT = Path(__file__).resolve().parents[1]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def machine() -> dict:
    """What the figures came from: CPU model and capability, native bf16, threads, versions."""
    import platform
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu_model": cpu, "cpus": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16_cpu": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "transformers": transformers.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def run_ours(cfg, data, seed: int, steps: int | None = None) -> tuple[float, float, torch.nn.Module]:
    """(wall s, CPU s of this process, trained model)."""
    model = load_model(cfg.model, get_task(cfg.task.name), seed)
    epochs = None if steps is None else steps / math.ceil(len(data.train) / cfg.trainer.batch_size)
    start, cpu = time.perf_counter(), time.process_time()
    finetune(model, data.train, cfg.trainer, seed, collate_fn=data.collate_fn, epochs=epochs)
    return time.perf_counter() - start, time.process_time() - cpu, model


def run_hf_trainer(cfg, data, seed: int, steps: int | None = None) -> tuple[float, float, torch.nn.Module]:
    """transformers' Trainer with the same settings (linear decay to 0, no warmup, AdamW, clip 1.0)."""
    from transformers import Trainer, TrainingArguments

    t = cfg.trainer
    model = load_model(cfg.model, get_task(cfg.task.name), seed)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out, per_device_train_batch_size=t.batch_size, num_train_epochs=t.epochs,
            max_steps=steps or -1, learning_rate=t.lr, weight_decay=t.weight_decay, lr_scheduler_type="linear",
            warmup_steps=0, max_grad_norm=t.max_grad_norm, adam_epsilon=t.adam_eps, seed=seed, data_seed=seed,
            bf16=run_precision(t) == "bf16", use_cpu=not torch.cuda.is_available(),
            train_sampling_strategy="group_by_length" if t.group_by_length else "random", report_to=[],
            save_strategy="no", eval_strategy="no", logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=data.train, data_collator=data.collate_fn)
        start, cpu = time.perf_counter(), time.process_time()
        trainer.train()
        return time.perf_counter() - start, time.process_time() - cpu, trainer.model


def base_overrides(args, *extra: str) -> list[str]:
    return ["model=minilm_l6", f"trainer.precision={args.precision}", "trainer.progress=false", *extra,
            *([f"model.num_layers={args.layers}"] if args.layers else []), *args.override]


def throughput(args) -> dict:
    """Samples/s of ours and Trainer, random and length-grouped batches, ``steps`` steps on full MRPC
    (the grouping works over the whole epoch's mega-batches, as in a real run)."""
    cfgs = {group: compose(base_overrides(args, f"trainer.group_by_length={group}")) for group in ("false", "true")}
    data = load_text_task(get_task("mrpc"), cfgs["false"].data, load_tokenizer(cfgs["false"].model), 128)
    run_ours(cfgs["false"], data, 0, steps=2)  # warm-up
    sides = {f"{name}_{'grouped' if g == 'true' else 'random'}": (fn, cfgs[g])
             for g in ("false", "true") for name, fn in (("ours", run_ours), ("hf_trainer", run_hf_trainer))}
    wall, cpu = {k: [] for k in sides}, {k: [] for k in sides}
    for rep in range(args.repeats):  # interleaved, so drift in machine load hits every side alike
        for key, (fn, cfg) in sides.items():
            w, c, _ = fn(cfg, data, rep, steps=args.steps)
            wall[key].append(args.steps * 32 / w)
            cpu[key].append(args.steps * 32 / c)  # per CPU second: steadier on a shared machine
    out = {"mode": "throughput", "precision": args.precision, "precision_used": run_precision(cfgs["false"].trainer),
           "steps": args.steps, "repeats": args.repeats, "raw": {"wall": wall, "cpu": cpu}}
    for name, results in (("", wall), ("_per_cpu_s", cpu)):
        med = {k: float(np.median(v)) for k, v in results.items()}
        out[f"samples_per_s{name}"] = med
        out[f"ratios{name}"] = {"ours_over_trainer_random": med["ours_random"] / med["hf_trainer_random"],
                                "ours_over_trainer_grouped": med["ours_grouped"] / med["hf_trainer_grouped"],
                                "ours_grouped_over_trainer_default": med["ours_grouped"] / med["hf_trainer_random"]}
    return out


def agreement_job(side: str, overrides: list[str], seed: int, threads: int) -> dict:
    """One finetune and its dev accuracy (a joblib worker: loads its own data)."""
    torch.set_num_threads(threads)
    fn = run_hf_trainer if side == "hf_trainer" else run_ours
    cfg = compose(overrides)
    task = get_task("mrpc")
    data = load_text_task(task, cfg.data, load_tokenizer(cfg.model), cfg.trainer.max_length)
    wall, _, model = fn(cfg, data, seed)
    logits = predict(model, data.evals["validation"], cfg.trainer, data.collate_fn)
    row = {"seed": seed, side: member_metrics(task, logits, data.labels("validation"))["accuracy"],
           f"{side}_s": round(wall, 1)}
    print(row, flush=True)
    return row


def agreement(args) -> dict:
    """Dev accuracy on full MRPC: grouped vs random batches (ours), or ours vs Trainer; the finetunes
    run as ``--jobs`` parallel processes of cores / jobs threads each."""
    from joblib import Parallel, delayed

    if args.compare == "grouping":
        sides = {"random": base_overrides(args, "trainer.group_by_length=false"),
                 "grouped": base_overrides(args, "trainer.group_by_length=true")}
    else:
        sides = {"ours": base_overrides(args), "hf_trainer": base_overrides(args)}
    first = compose(next(iter(sides.values())))
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    done = Parallel(n_jobs=args.jobs, backend="loky")(
        delayed(agreement_job)(name, overrides, seed, threads) for seed in args.seeds for name, overrides in sides.items())
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        for part in (r for r in done if r["seed"] == seed):
            row |= part
        rows.append(row)
    a, b = sides
    mean = {k: float(np.mean([r[k] for r in rows])) for k in sides}
    return {"mode": "agreement", "compare": args.compare, "precision": args.precision,
            "precision_used": run_precision(first.trainer), "layers": args.layers or 6, "seeds": args.seeds,
            "overrides": args.override, "epochs": first.trainer.epochs, "lr": first.trainer.lr, "jobs": args.jobs,
            "threads_per_job": threads, "majority_class_accuracy": majority(first),
            "rows": rows, "mean_accuracy": mean, f"difference_points_{b}_minus_{a}": mean[b] - mean[a],
            "within_one_point": abs(mean[b] - mean[a]) <= 1.0}


def majority(cfg) -> float:
    """Dev accuracy of always predicting the most frequent training label: above it, a model learnt."""
    task = get_task("mrpc")
    data = load_text_task(task, cfg.data, load_tokenizer(cfg.model), cfg.trainer.max_length)
    train = np.asarray(data.train["labels"])
    dev = np.asarray(data.labels("validation"))
    return float(100 * np.mean(dev == np.bincount(train).argmax()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["throughput", "agreement"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--compare", default="grouping", choices=["grouping", "trainer"], help="agreement only")
    p.add_argument("--layers", type=int, default=None, help="cut MiniLM-L6 to this many layers (default: all 6)")
    # 28 steps = one whole mega-batch of full MRPC (min(3668 // (32 * 4), 50) batches): Trainer's grouped
    # run sorts each mega-batch longest first, so fewer steps would time only its longest batches
    p.add_argument("--steps", type=int, default=28)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--override", nargs="*", default=[], help="Hydra overrides for both sides, e.g. trainer.epochs=1")
    p.add_argument("--jobs", type=int, default=2, help="agreement: parallel finetunes (default 2)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    result = (throughput if args.mode == "throughput" else agreement)(args)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = machine()
    tag = args.compare if args.mode == "agreement" else "ours_vs_trainer"
    seeds = "" if args.mode == "throughput" else "_seeds" + "-".join(map(str, args.seeds))
    out = ROOT / "bench_results" / f"trainer_{args.mode}_{tag}_{args.precision}_L{args.layers or 6}{seeds}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("raw", "rows")}, indent=2))


if __name__ == "__main__":
    with user_errors_exit():  # e.g. no GLUE_DIR and no hub: one line and exit 2, as train.py
        main()
