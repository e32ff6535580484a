"""Subset evaluation speed: every k-subset of 10 members, vectorised vs one scikit-learn call per subset.

  python benchmarks/bench_evaluate.py [--repeat 3] [--members 10]
Cases: MRPC-sized (408 x 2, all 1,023 subsets, with F1, NLL, ECE, Brier), STS-B-sized
(1,500 regression scores, all 1,023 subsets), MNLI-sized (9,815 x 3, k = 1..5), and the
whole `evaluate()` (5 methods x 20 seeds, MRPC, k = 1..5, files written). Labels are the
real MRPC dev labels when GLUE_DIR (or ../shared/data/glue) has them. Prints a markdown
table and writes bench_results/evaluate.json.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from ticket_ensembles import store
from ticket_ensembles.evaluation.combine import score_subsets, subset_matrix
from ticket_ensembles.evaluation.metrics import ece, nll, softmax
from ticket_ensembles.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def mrpc_labels(rng: np.random.Generator) -> np.ndarray:
    dev = Path(os.environ.get("GLUE_DIR") or ROOT.parent / "shared" / "data" / "glue") / "MRPC" / "dev.tsv"
    if dev.is_file():
        return np.array([int(line.split("\t")[0]) for line in dev.read_text(encoding="utf-8-sig").splitlines()[1:]])
    return rng.integers(0, 2, 408)


def members(rng, labels, m: int, num_classes: int) -> np.ndarray:
    logits = rng.normal(0, 1.2, (m, len(labels), num_classes))
    logits[:, np.arange(len(labels)), labels] += 1.0
    return logits


def all_subsets(task, logits, labels, ks) -> tuple[float, int]:
    """Seconds to score every subset of every size in ks, and the number of subsets."""
    start, count = time.perf_counter(), 0
    for k in ks:
        subsets = subset_matrix(logits.shape[0], k)
        score_subsets(logits, labels, subsets, task, "prob_mean")
        count += len(subsets)
    return time.perf_counter() - start, count


def naive(logits, labels, ks) -> float:
    """The obvious loop: one ensemble and one scikit-learn call per subset."""
    start = time.perf_counter()
    probs = softmax(logits)
    for k in ks:
        for subset in subset_matrix(logits.shape[0], k):
            p = probs[subset].mean(0)
            pred = p.argmax(-1)
            accuracy_score(labels, pred), f1_score(labels, pred, zero_division=0), nll(p, labels), ece(p, labels)
    return time.perf_counter() - start


def full_evaluate(rng, labels) -> float:
    from hydra import compose, initialize_config_dir

    from ticket_ensembles.config import register_configs
    from ticket_ensembles.evaluation import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        for method in ("baseline", "bagging", "base_lt", "active_lt", "random_lt"):
            for s, logits in enumerate(members(rng, labels, 20, 2)):
                with store.building_member(store.member_dir(f"{tmp}/store", "mrpc", "bench", method, s)) as d:
                    store.write_predictions(d, "predictions.npz", logits, labels)
        register_configs()
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("evaluate", overrides=[f"paths.root_dir={tmp}", "model.name=bench"])
        start = time.perf_counter()
        evaluate(cfg)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--members", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    m = args.members
    mrpc = mrpc_labels(rng)
    stsb = rng.uniform(0, 5, 1500)
    mnli = rng.integers(0, 3, 9815)
    every = range(1, m + 1)
    cases = {
        "mrpc 408x2, k=1..10": lambda: all_subsets(get_task("mrpc"), members(rng, mrpc, m, 2), mrpc, every),
        "stsb 1500, k=1..10": lambda: all_subsets(get_task("stsb"), stsb + rng.normal(0, 1, (m, 1500)), stsb, every),
        "mnli 9815x3, k=1..5": lambda: all_subsets(get_task("mnli"), members(rng, mnli, m, 3), mnli, range(1, 6)),
    }
    results = {}
    for name, case in cases.items():
        runs = [case() for _ in range(args.repeat)]
        results[name] = {"seconds": min(t for t, _ in runs), "subsets": runs[0][1]}
    results["mrpc naive sklearn loop, k=1..10"] = {
        "seconds": naive(members(rng, mrpc, m, 2), mrpc, every), "subsets": 2**m - 1}
    results["evaluate(): 5 methods x 20 seeds, mrpc, k=1..5"] = {"seconds": full_evaluate(rng, mrpc), "subsets": None}
    print("| case | subsets | seconds |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['subsets'] or '–'} | {r['seconds']:.3f} |")
    out = ROOT / "bench_results"
    out.mkdir(exist_ok=True)
    (out / "evaluate.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
