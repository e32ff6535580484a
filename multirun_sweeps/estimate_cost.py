"""GPU-hours of each make target: optimizer steps x seconds per step (an estimate, not a measurement).

    python multirun_sweeps/estimate_cost.py                       # the README table
    python multirun_sweeps/estimate_cost.py --bert-step 0.08      # your GPU's seconds per step
    python multirun_sweeps/estimate_cost.py --measure store/mrpc/bert_base_uncased

Steps follow the paper's settings: batch 32, 3 epochs per finetune; a ticket member is
prune_ratio / prune_step pruning finetunes plus the final one (3 + 1 at 30%, 2 + 1 at 20%);
BAGGING trains on 90% of the rows. Evaluation passes are ignored (a few seconds per member).
--measure reads the members' run.json (wall time / optimizer steps, loading included).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

# GLUE training rows (the standard release)
TRAIN_ROWS = {"cola": 8551, "sst2": 67349, "mrpc": 3668, "stsb": 5749, "qnli": 104743, "mnli": 392702}
CIFAR_STEPS_PER_EPOCH = math.ceil(50_000 / 128)
SEEDS = 20
# finetunes per member and the share of the rows each one sees
METHODS = {"baseline": (1, 1.0), "bagging": (1, 0.9), "base_lt": (4, 1.0), "active_lt": (4, 1.0),
           "random_lt": (4, 1.0)}
ALL = list(METHODS)


def finetune_steps(rows: int, epochs: int = 3, batch: int = 32) -> int:
    return epochs * math.ceil(rows / batch)


def glue_steps(tasks: list[str], methods: list[str], seeds: int = SEEDS, finetunes: dict | None = None) -> int:
    total = 0
    for task in tasks:
        for method in methods:
            n, share = (finetunes or METHODS)[method]
            total += seeds * n * finetune_steps(round(share * TRAIN_ROWS[task]))
    return total


def targets() -> dict[str, tuple[str, int, str]]:
    """target -> (model family, optimizer steps, what it trains)."""
    cifar = (4 * 250 + 3 * 250 + 450) * CIFAR_STEPS_PER_EPOCH  # dense x4, DST x3, one EDST run
    sst2_p20 = {"baseline": (1, 1.0), "random_lt": (3, 1.0)}
    return {
        "table1": ("bert", glue_steps(["mrpc", "stsb"], ALL), "MRPC, STS-B x 5 methods x 20 seeds"),
        "table2": ("bert", glue_steps(["mrpc"], ["baseline", "base_lt", "active_lt", "random_lt"]),
                   "MRPC x 4 methods x 20 seeds (Table 1's members)"),
        "table3": ("bert", glue_steps(["mrpc", "stsb"], ALL), "as Table 1 with roberta-base"),
        "figure3": ("bert", glue_steps(["mrpc", "stsb"], ALL), "Table 1's members"),
        "figure4": ("bert", glue_steps(["mrpc"], ["base_lt", "active_lt", "random_lt"], seeds=5),
                    "MRPC x 3 ticket methods x 5 seeds (Table 1's first five)"),
        "sst2_footnote": ("bert", glue_steps(["sst2"], ["baseline", "random_lt"], finetunes=sst2_p20),
                          "SST-2 x {BASELINE, RANDOM-LT at 20%} x 20 seeds"),
        "other_tasks": ("bert", glue_steps(["cola", "qnli", "sst2", "mnli"], ALL),
                        "CoLA, QNLI, SST-2, MNLI x 5 methods x 20 seeds"),
        "freetickets_cifar10": ("wrn", cifar, "WRN-28-10: dense x4, DST x3 (250 ep.), EDST x1 (450 ep.)"),
        "freetickets_cifar100": ("wrn", cifar, "as CIFAR-10"),
    }


def measured_seconds_per_step(folder: Path) -> float:
    facts = [json.loads(p.read_text()) for p in folder.glob("*/seed_*/run.json")]
    steps = sum(f.get("optimizer_steps", 0) for f in facts)
    if not steps:
        raise SystemExit(f"error: no member with run.json under {folder}: train a few members first")
    return sum(f.get("wall_time_s", 0.0) for f in facts) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bert-step", type=float, default=0.15,
                        help="seconds per step, bert-base/roberta-base, batch 32, length <= 128 (default: estimate)")
    parser.add_argument("--wrn-step", type=float, default=0.09,
                        help="seconds per step, WRN-28-10, batch 128 on CIFAR (default: estimate)")
    parser.add_argument("--measure", type=Path, help="a store folder <store>/<task>/<model>: print its s/step")
    args = parser.parse_args()
    if args.measure:
        print(f"{measured_seconds_per_step(args.measure):.4f} s per optimizer step (wall time / steps)")
        return
    per_step = {"bert": args.bert_step, "wrn": args.wrn_step}
    print("| target | trains | optimizer steps | GPU-hours (estimate) |\n|---|---|---|---|")
    for name, (family, steps, what) in targets().items():
        print(f"| `make {name}` | {what} | {steps:,} | {steps * per_step[family] / 3600:,.1f} |")


if __name__ == "__main__":
    main()
