#!/usr/bin/env bash
# make mechanism (docs/lottery.md): do the L1 regularisers diversify the masks (Figure 4), and at
# what accuracy cost? conf/experiment/mechanism.yaml has the setting (MiniLM cut to 2 layers,
# full MRPC, quarter-epoch pruning rounds, fp32). Two stages, each resumable:
#   masks     5 seeds of base_lt, and of random_lt and active_lt per L1 setting (final finetune
#             cut to 0.02 epoch: it never changes a mask)
#   accuracy  3 seeds of each method at the default settings of both L1 modes, full final finetune
# then the report into MECHANISM_OUT (default results/mechanism). MECHANISM_STAGES picks stages.
# Jobs are listed seed-major so that the active_lt chains advance together on parallel workers.
# Two 1-thread workers by default (each gets cores / n_jobs threads); SWEEP_ARGS replaces this.
SWEEP_ARGS="${SWEEP_ARGS-hydra/launcher=joblib hydra.launcher.n_jobs=2}"
source "$(dirname "$0")/common.sh"
STAGES="${MECHANISM_STAGES:-masks accuracy report}"
OUT="${MECHANISM_OUT:-results/mechanism}"
ROOT="${TE_ROOT:-.}/mechanism"
MASKS=(experiment=mechanism trainer.epochs=0.02)
TAUS_DECOUPLED="${MECHANISM_TAUS_DECOUPLED:-2,4,8}"
TAUS_LOSS_EXTRA="${MECHANISM_TAUS_LOSS_EXTRA:-1e-2}"  # beside the loss default 1e-4: Adam saturates

if [[ " $STAGES " == *" masks "* ]]; then
    sweep "seed=range(5)" method=base_lt "${MASKS[@]}"
    sweep "seed=range(5)" method=active_lt,random_lt method.l1_mode=loss method.l1_tau=1e-4 "${MASKS[@]}"
    sweep "seed=range(5)" method=active_lt,random_lt method.l1_mode=decoupled "method.l1_tau=$TAUS_DECOUPLED" "${MASKS[@]}"
    sweep "seed=range(5)" method=active_lt,random_lt method.l1_mode=loss "method.l1_tau=$TAUS_LOSS_EXTRA" "${MASKS[@]}"
fi
if [[ " $STAGES " == *" accuracy "* ]]; then  # method.l1_tau stays null: each mode's default
    sweep "seed=range(3)" method=base_lt,active_lt,random_lt experiment=mechanism
    sweep "seed=range(3)" method=active_lt,random_lt method.l1_mode=decoupled experiment=mechanism
fi
if [[ " $STAGES " == *" report "* ]]; then
    run "$PYTHON" -m ticket_ensembles.evaluation.mechanism "$ROOT/store" "$OUT"
fi
