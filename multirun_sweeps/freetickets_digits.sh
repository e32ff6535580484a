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
# member_checkpoints.csv beside the reports: which step each member is (best_val) and its test accuracy
run "$PYTHON" - "${TE_ROOT:-.}/outputs/freetickets_digits" <<'PY'
import csv, json, sys
from pathlib import Path
root = Path(sys.argv[1])
rows = []
for run in sorted((root / "store/digits/wrn16_2").glob("*/seed_*/run.json")):
    d, m = json.loads(run.read_text()), json.loads((run.parent / "metrics.json").read_text())
    rows.append({"method": run.parent.parent.name, "member": run.parent.name,
                 "member_checkpoint": d.get("member_checkpoint", "last"),
                 "member_step": d.get("member_step", d["optimizer_steps"]), "run_steps": d["optimizer_steps"],
                 "validation_accuracy": d.get("validation_accuracy"), "test_accuracy": m["accuracy"],
                 "jumps": " ".join(map(str, d.get("jumps", []))), "density": round(d.get("density", 1.0), 4),
                 "train_flops_rel_dense": round(d["flops"]["train_member_rel_dense"], 4),
                 "inference_flops_rel_dense": round(d["flops"]["inference_rel_dense"], 4),
                 "wall_time_s": d["wall_time_s"]})
out = root / "reports/freetickets_digits/digits/wrn16_2/member_checkpoints.csv"
with open(out, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
print(f"wrote {out}")
PY
