"""Peak memory (RSS) of a training run and of an evaluation, each in its own process.

  python benchmarks/bench_memory.py [--layers 6] [--train-samples 256]
Trains 2 baseline members of MiniLM on MRPC into a temporary store, then evaluates them;
reports each child's peak RSS (ru_maxrss). Writes bench_results/memory.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib(args: list[str]) -> tuple[float, float]:
    """Run one child process; return (its peak RSS in MiB, wall seconds)."""
    start = time.perf_counter()
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far, so measure each in a fresh shell
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        raise SystemExit(f"benchmark child failed: {res.stderr[-2000:]}")
    return int(res.stdout.strip().splitlines()[-1]) / 1024, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--train-samples", type=int, default=256)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        common = [f"paths.root_dir={tmp}", "model=minilm_l6", f"data.max_train_samples={a.train_samples}",
                  "trainer.epochs=1", "trainer.progress=false"]
        if a.layers != 6:
            common.append(f"model.num_layers={a.layers}")
        train_mib, train_s = peak_rss_mib([sys.executable, "train.py", "-m", *common, "seed=0,1"])
        layers = common[-1:] if a.layers != 6 else []
        eval_mib, eval_s = peak_rss_mib([sys.executable, "evaluate.py", f"paths.root_dir={tmp}", "model=minilm_l6",
                                         *layers, "ensemble.groups=[[0,1]]", "ensemble.max_size=2"])
    result = {"train_peak_rss_mib": round(train_mib), "train_wall_s": round(train_s, 1),
              "evaluate_peak_rss_mib": round(eval_mib), "evaluate_wall_s": round(eval_s, 1),
              "setting": vars(a), "cpus": os.cpu_count()}
    out = ROOT / "bench_results" / "memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
