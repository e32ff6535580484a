#!/usr/bin/env bash
# make demo: all six methods on real SST-2 (GLUE_DIR, else the hub) with the real pretrained
# all-MiniLM-L6-v2 from its pip package, DEMO_SEEDS seeds each in two groups,
# then evaluate. Offline. Each sweep runs DEMO_JOBS (2) parallel workers (hydra/launcher=joblib,
# one thread each on 2 cores). First prints an estimate of its own duration on this machine.
# Resumable like every sweep: run it again and only missing members are trained.
source "$(dirname "$0")/common.sh"
SEEDS="${DEMO_SEEDS:-4}"
JOBS="${DEMO_JOBS:-2}"
HALF=$((SEEDS / 2))
EVAL_GROUPS="[[$(seq -s, 0 $((HALF - 1)))],[$(seq -s, $HALF $((SEEDS - 1)))]]"
# the script's overrides first, then the launcher, then the user's SWEEP_ARGS (they win)
sweep() { run "$PYTHON" train.py -m "$@" hydra/launcher=joblib "hydra.launcher.n_jobs=$JOBS" "${SWEEP_EXTRA[@]}"; }

run "$PYTHON" multirun_sweeps/demo_estimate.py --seeds "$SEEDS" --jobs "$JOBS" "${SWEEP_EXTRA[@]}"
# three sweeps, each keeping both workers busy: the dense methods; DST (its schedule needs its own base
# config, experiment=demo_dst); then the tickets seed by seed (an active_lt seed's chain predecessor,
# the seed before it, is then done). Every pruning round is a full finetune: real IMP tickets.
sweep experiment=demo method=baseline,bagging "seed=range($SEEDS)"
sweep experiment=demo_dst "seed=range($SEEDS)"
sweep experiment=demo_tickets "seed=range($SEEDS)" method=active_lt,base_lt,random_lt "method.group_size=$HALF"
run "$PYTHON" evaluate.py task=sst2 model=minilm_l6 "paths.root_dir=\${oc.env:TE_ROOT,.}/demo" \
    "ensemble.groups=$EVAL_GROUPS" "ensemble.max_size=$HALF" logger=wandb experiment_name=demo "${EVAL_EXTRA[@]}"
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
