#!/usr/bin/env bash
# make demo: all six methods on real MRPC (GLUE_DIR, else the hub) with the real pretrained
# all-MiniLM-L6-v2 from its pip package, DEMO_SEEDS seeds each in two groups, then evaluate.
# Offline. Resumable like every sweep: run it again and only missing members are trained.
source "$(dirname "$0")/common.sh"
SEEDS="${DEMO_SEEDS:-4}"
HALF=$((SEEDS / 2))
EVAL_GROUPS="[[$(seq -s, 0 $((HALF - 1)))],[$(seq -s, $HALF $((SEEDS - 1)))]]"
TICKETS=(method.epochs_per_round=0.25 "method.group_size=$HALF")

sweep experiment=demo method=baseline,bagging "seed=range($SEEDS)"
# one sweep per ticket method: method.* overrides must name a method the base config has
sweep experiment=demo method=base_lt "seed=range($SEEDS)" "${TICKETS[@]}"
sweep experiment=demo method=random_lt "seed=range($SEEDS)" "${TICKETS[@]}"
sweep experiment=demo method=active_lt "seed=$((HALF - 1)),$((SEEDS - 1))" "${TICKETS[@]}"
sweep experiment=demo method=freetickets method.variant=dst "seed=range($SEEDS)"
run "$PYTHON" evaluate.py task=mrpc model=minilm_l6 "paths.root_dir=\${oc.env:TE_ROOT,.}/demo" \
    "ensemble.groups=$EVAL_GROUPS" "ensemble.max_size=$HALF" logger=wandb experiment_name=demo "${EVAL_EXTRA[@]}"
if [ -z "${DRY_RUN:-}" ]; then
    ROOT="${TE_ROOT:-.}/demo"
    # the model folder is minilm_l6, or minilm_l6_L<n> when EVAL_ARGS/SWEEP_ARGS cut the depth
    REPORT="$(ls -dt "$ROOT"/reports/mrpc/minilm_l6*/ | head -n 1)"
    REPORT="${REPORT%/}"
    echo
    cat "$REPORT/table1.md"
    echo
    echo "Reports (table1.md/.tex, table2.md, summary.csv, combinations.csv, diversity.csv, figure3.png, figure4_*.png): $REPORT/"
    echo "Member store: $ROOT/store/mrpc/$(basename "$REPORT")/"
    echo "W&B offline run (upload with 'wandb sync <dir>'): $(ls -dt "$ROOT"/logs/wandb/offline-run-* 2>/dev/null | head -n 1)"
fi
