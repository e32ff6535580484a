"""Print how long `make demo` will take on THIS machine, from a few timed training steps.

    python multirun_sweeps/demo_estimate.py --seeds 3 --jobs 2 [--round-epochs E] [overrides]

Times (on one thread, as each of the demo's parallel workers runs) the loading of data and model,
a few training steps and a prediction pass at the demo's settings, then multiplies by the work of
the members still missing from the store. Takes 10-30 s; an estimate, not a promise.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from ticket_ensembles import store  # noqa: E402
from ticket_ensembles.cli import user_errors_exit  # noqa: E402
from ticket_ensembles.config import register_configs  # noqa: E402
from ticket_ensembles.data import load_text_task  # noqa: E402
from ticket_ensembles.models import load_model, load_tokenizer  # noqa: E402
from ticket_ensembles.run import check_environment  # noqa: E402
from ticket_ensembles.tasks import get_task  # noqa: E402
from ticket_ensembles.trainer import finetune, predict, run_precision, train_loader  # noqa: E402

IMPORT_S = time.perf_counter() - STARTED  # paid again by every worker of every sweep
ROOT = Path(__file__).resolve().parents[1]
SWEEPS = 1  # train.py processes in demo.sh (each starts its own workers)
TIMED_STEPS = 3
EVALUATE_S = 20  # evaluate.py over the demo's 18 members: seconds, measured, barely depends on the CPU


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("train", overrides=["experiment=demo", *overrides])


TICKETS = ("base_lt", "random_lt", "active_lt")
ROUNDS = 3  # pruning rounds to 30 %, each ending with a dev evaluation


def member_steps(cfg, rows: int, round_epochs: float | None) -> dict[str, int]:
    """Optimizer steps of one member of each demo method (store folder -> steps); rounds of
    ``round_epochs`` (None: as long as the final finetune, method.epochs_per_round's default)."""
    per_epoch = math.ceil(rows / cfg.trainer.batch_size)
    round_epochs = cfg.trainer.epochs if round_epochs is None else round_epochs
    full = math.ceil(cfg.trainer.epochs * per_epoch)
    ticket = ROUNDS * math.ceil(round_epochs * per_epoch) + full  # 3 pruning rounds to 30%, then the final finetune
    return {"baseline": full, "bagging": math.ceil(cfg.trainer.epochs * math.ceil(0.9 * rows / cfg.trainer.batch_size)),
            "base_lt": ticket, "random_lt": ticket, "active_lt": ticket, "freetickets_dst": full}


def missing_members(cfg, seeds: int, steps: dict[str, int]) -> list[tuple[str, int]]:
    folder = store.model_folder(cfg.model)
    return [(m, s) for m in steps for s in range(seeds)
            if not store.is_complete(store.member_dir(cfg.paths.store_dir, cfg.task.name, folder, m, s))]


def padded_tokens(loader, batches: int | None = None) -> int:
    return sum(b["attention_mask"].numel() for b in itertools.islice(loader, batches))


def timings(cfg) -> dict[str, float]:
    """Seconds on one thread: load data + model, one training step, one predicted dev row."""
    start = time.perf_counter()
    task = get_task(cfg.task.name)
    data = load_text_task(task, cfg.data, load_tokenizer(cfg.model), cfg.trainer.max_length)
    model = load_model(cfg.model, task, 0)
    load_s = time.perf_counter() - start
    per_epoch = math.ceil(len(data.train) / cfg.trainer.batch_size)
    finetune(model, data.train, cfg.trainer, 0, collate_fn=data.collate_fn, epochs=1 / per_epoch)  # warm-up
    result = finetune(model, data.train, cfg.trainer, 1, collate_fn=data.collate_fn, epochs=TIMED_STEPS / per_epoch)
    # a step costs about its padded tokens: scale the timed batches (length-grouped ones start with
    # the longest) to the mean batch of an epoch
    timed = padded_tokens(train_loader(data.train, cfg.trainer, 1, data.collate_fn), TIMED_STEPS)
    mean_batch = padded_tokens(train_loader(data.train, cfg.trainer, 0, data.collate_fn)) / per_epoch
    dev = data.evals["validation"]
    sample = dev.select(range(0, len(dev), max(1, len(dev) // 64)))  # every n-th row: all lengths
    start = time.perf_counter()
    predict(model, sample, cfg.trainer, data.collate_fn)
    return {"load": load_s, "step": result.wall_time / timed * mean_batch, "dev_row": (time.perf_counter() - start) / len(sample),
            "dev_rows": len(dev), "train_rows": len(data.train)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2, help="parallel workers of each sweep")
    p.add_argument("--round-epochs", type=float, default=None, help="pruning-round length (default: trainer.epochs)")
    p.add_argument("overrides", nargs="*", help="train.py overrides (hydra/... launcher ones are ignored)")
    args = p.parse_args()
    check_environment()
    cfg = compose([o for o in args.overrides if not o.startswith("hydra")] + ["trainer.progress=false"])
    workers = max(1, min(args.jobs, os.cpu_count() or 1))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))  # as joblib sets each worker
    t = timings(cfg)
    steps = member_steps(cfg, t["train_rows"], args.round_epochs)
    todo = missing_members(cfg, args.seeds, steps)
    dev_passes = sum(1 + (ROUNDS if m in TICKETS else 0) for m, _ in todo)  # a ticket's rounds end with one too
    work = sum(steps[m] for m, _ in todo) * t["step"] + len(todo) * t["load"] + dev_passes * t["dev_rows"] * t["dev_row"]
    total = (work + SWEEPS * workers * IMPORT_S) / workers + EVALUATE_S
    print(f"Estimated demo time on this machine: about {math.ceil(total / 60)} min for {len(todo)} members "
          f"({t['step']:.2f} s per training step, {run_precision(cfg.trainer)}, {workers} parallel workers; "
          f"measured in {time.perf_counter() - STARTED:.0f} s)", flush=True)


if __name__ == "__main__":
    with user_errors_exit():
        main()
