"""Do DataLoader workers pay for CIFAR augmentation? Batches per second of the training loader.

CIFAR-10-shaped uint8 images (32 x 32 x 3, random pixels: the cost does not depend on them) in the
suite's ImageDataset with CIFAR-10's augmentation (zero padding 4, random crop, horizontal flip,
normalisation, per sample in __getitem__), batch 128, through trainer.train_loader as a run makes it:
no workers (every CPU default) against 1, 2, ... worker processes, nothing else in the loop. A GPU
step of WRN-28-10 takes about 60-90 ms, so the main process must deliver a batch in less than that.
  python benchmarks/bench_loader.py [--batches 40] [--workers 0 1 2] [--repeats 3]
Writes bench_results/loader.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from ticket_ensembles.tasks import get_task
from ticket_ensembles.trainer import cpu_name, train_loader
from ticket_ensembles.vision import ImageDataset

ROOT = Path(__file__).resolve().parents[1]


class Cfg:
    batch_size = 128
    group_by_length = False


def seconds_per_batch(ds, workers: int, batches: int) -> float:
    options = {"num_workers": workers} if workers else {}
    loader = train_loader(ds, Cfg, 0, None, **options)
    it = iter(loader)
    next(it)  # workers started and the first batch served: what remains is the steady state
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return (time.perf_counter() - start) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = (args.batches + 2) * Cfg.batch_size
    images = np.random.default_rng(0).integers(0, 256, (rows, 3, 32, 32), dtype=np.uint8)
    ds = ImageDataset(images, np.zeros(rows, dtype=np.int64), get_task("cifar10").image, augment=True)
    results = {w: [] for w in args.workers}
    for _ in range(args.repeats):  # interleaved: drift in machine load hits every setting
        for w in args.workers:
            results[w].append(seconds_per_batch(ds, w, args.batches))
    out = {"cpu": cpu_name(), "cpus": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "torch_threads": torch.get_num_threads(), "batch": Cfg.batch_size, "batches": args.batches,
           "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "ms_per_batch_median": {str(w): round(1000 * float(np.median(v)), 1) for w, v in results.items()},
           "raw_s": {str(w): v for w, v in results.items()}}
    print(json.dumps({k: out[k] for k in ("cpu", "cpu_capability", "load_average", "ms_per_batch_median")}))
    (ROOT / "bench_results").mkdir(exist_ok=True)
    (ROOT / "bench_results" / "loader.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
