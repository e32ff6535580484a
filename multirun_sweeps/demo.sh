#!/usr/bin/env bash
# make demo: all six methods on real SST-2 (GLUE_DIR, else the hub) with the real pretrained
# all-MiniLM-L6-v2 from its pip package, DEMO_SEEDS (3) seeds each in one group (every
# k-subset up to k = 5), then evaluate. Offline. Each sweep runs DEMO_JOBS (2) parallel workers (hydra/launcher=joblib,
# one thread each on 2 cores). First prints an estimate of its own duration on this machine.
# Resumable like every sweep: run it again and only missing members are trained.
source "$(dirname "$0")/common.sh"
SEEDS="${DEMO_SEEDS:-3}"
JOBS="${DEMO_JOBS:-2}"
if [ "$SEEDS" -lt 2 ] || [ "$SEEDS" -gt 10 ]; then
    echo "error: DEMO_SEEDS=$SEEDS: use 2 to 10 seeds (an ensemble needs two; the active_lt chain holds ten)" >&2
    exit 2
fi
K=$((SEEDS < 5 ? SEEDS : 5))
EVAL_GROUPS="[[$(seq -s, 0 $((SEEDS - 1)))]]"
# the script's overrides first, then the launcher, then the user's SWEEP_ARGS (they win)
sweep() { run "$PYTHON" train.py -m "$@" hydra/launcher=joblib "hydra.launcher.n_jobs=$JOBS" "${SWEEP_EXTRA[@]}"; }

run "$PYTHON" multirun_sweeps/demo_estimate.py --seeds "$SEEDS" --jobs "$JOBS" "${SWEEP_EXTRA[@]}"
# one sweep of every method x seed, each method as an experiment (demo_<method>, so that its own settings
# compose), seed by seed with active_lt first in each seed: an active_lt seed's chain predecessor (the
# seed before it) is done by the time it starts. Every pruning round is a full finetune (IMP tickets).
# (the sweep's own process composes no experiment: it is told the demo's root and name, so that its
# sweep folder and progress bar are the jobs')
sweep "seed=range($SEEDS)" experiment=demo_active_lt,demo_base_lt,demo_random_lt,demo_dst,demo_bagging,demo \
    "paths.root_dir=\${oc.env:TE_ROOT,.}/demo" experiment_name=demo
run "$PYTHON" evaluate.py task=sst2 model=minilm_l6 "paths.root_dir=\${oc.env:TE_ROOT,.}/demo" \
    "ensemble.groups=$EVAL_GROUPS" "ensemble.max_size=$K" ensemble.table_size=2 logger=wandb experiment_name=demo "${EVAL_EXTRA[@]}"
if [ -z "${DRY_RUN:-}" ]; then
    ROOT="${TE_ROOT:-.}/demo"
    # the model folder is minilm_l6, or minilm_l6_L<n> when EVAL_ARGS/SWEEP_ARGS cut the depth
    REPORT="$(ls -dt "$ROOT"/reports/sst2/minilm_l6*/ | head -n 1)"
    REPORT="${REPORT%/}"
    echo
    cat "$REPORT/table1.md"
    echo
    echo "Reports (table1.md/.tex, table2.md, summary.csv, combinations.csv, diversity.csv, figure3.png, figure4_*.png): $REPORT/"
    echo "Member store: $ROOT/store/sst2/$(basename "$REPORT")/"
    echo "W&B offline run (upload with 'wandb sync <dir>'): $(ls -dt "$ROOT"/logs/wandb/offline-run-* 2>/dev/null | head -n 1)"
fi
