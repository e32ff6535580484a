#!/usr/bin/env bash
# make freetickets_digits: FreeTickets' CIFAR study scaled down to scikit-learn's 8x8 digits, offline
# on a CPU: WRN-16-2, dense x3 and DST x3 (40 epochs each), one EDST run of M = 3 (24 + 3 x 16
# epochs), density 0.2, then evaluate.py (accuracy, NLL, ECE, OoD AUROC against the photos set,
# disagreement/KL, FLOPs relative to one dense model). fp32, one torch thread per run.
# Store and reports under ${TE_ROOT:-.}/outputs/freetickets_digits (reports/freetickets_digits/digits/wrn16_2/).
# Two runs at a time: SWEEP_ARGS="hydra/launcher=joblib hydra.launcher.n_jobs=2" (docs/freetickets.md).
source "$(dirname "$0")/common.sh"
ROOT="\${oc.env:TE_ROOT,.}/outputs/freetickets_digits"
COMMON=(trainer.precision=fp32 trainer.num_threads=1 trainer.progress=false "paths.root_dir=$ROOT")
sweep experiment=freetickets_digits_dense,freetickets_digits "seed=range(3)" "${COMMON[@]}"
sweep experiment=freetickets_digits method.variant=edst seed=0 "${COMMON[@]}"
evaluate freetickets_digits task=digits model=wrn16_2 ensemble=freetickets "paths.root_dir=$ROOT"
