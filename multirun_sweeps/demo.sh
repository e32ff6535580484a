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
sweep experiment=demo method=base_lt,random_lt "seed=range($SEEDS)" "${TICKETS[@]}"
sweep experiment=demo method=active_lt "seed=$((HALF - 1)),$((SEEDS - 1))" "${TICKETS[@]}"
sweep experiment=demo method=freetickets method.variant=dst "seed=range($SEEDS)"
run "$PYTHON" evaluate.py task=mrpc model=minilm_l6 model.num_layers=3 "paths.root_dir=\${oc.env:TE_ROOT,.}/demo" \
    "ensemble.groups=$EVAL_GROUPS" "ensemble.max_size=$HALF" logger=wandb experiment_name=demo "${EVAL_EXTRA[@]}"
