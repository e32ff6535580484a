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
TAUS_DECOUPLED="${MECHANISM_TAUS_DECOUPLED:-2,8}"  # beside the default 4
TAUS_LOSS_EXTRA="${MECHANISM_TAUS_LOSS_EXTRA:-1e-2}"  # beside the loss default 1e-4: Adam saturates

# Most important first, so that a run cut short still answers the question: the decoupled default
# against the loss default and base_lt, the accuracy of those tickets, then the rest of the tau grid.
masks() { sweep "seed=range(5)" "$@" "${MASKS[@]}"; }
accuracy() { sweep "seed=range(3)" "$@" experiment=mechanism; }  # method.l1_tau null: the mode's default
has() { [[ " $STAGES " == *" $1 "* ]]; }

if has masks; then
    masks method=base_lt
    masks method=active_lt,random_lt method.l1_mode=decoupled
    masks method=active_lt,random_lt method.l1_mode=loss
fi
has accuracy && accuracy method=base_lt,active_lt,random_lt method.l1_mode=decoupled
if has masks; then
    masks method=random_lt,active_lt method.l1_mode=decoupled "method.l1_tau=$TAUS_DECOUPLED"
fi
has accuracy && accuracy method=active_lt,random_lt method.l1_mode=loss
has masks && masks method=random_lt,active_lt method.l1_mode=loss "method.l1_tau=$TAUS_LOSS_EXTRA"
if has report; then
    # Table 1/2 of the accuracy stage's tickets (3 seeds: k <= 3, 3 pairs), one report per L1 setting
    for store in "$ROOT"/store/final1.0/*/; do
        [ -d "$store" ] || continue  # no accuracy stage yet
        methods=()  # those with all 3 seeds (a run cut short may have fewer)
        for m in base_lt active_lt random_lt; do
            n=$(find "$store" -path "*/$m/seed_[012]/COMPLETE" 2>/dev/null | wc -l)
            [ "$n" -eq 3 ] && methods+=("$m")
        done
        [ ${#methods[@]} -gt 0 ] || continue
        list=$(IFS=,; echo "${methods[*]}")
        run "$PYTHON" evaluate.py task=mrpc model=minilm_l6 model.num_layers=2 "paths.store_dir=$store" \
            "ensemble.methods=[$list]" "ensemble.groups=[[0,1,2]]" ensemble.max_size=3 ensemble.iou_members=3 \
            "ensemble.report_dir=$OUT/ensembles_$(basename "$store")" "${EVAL_EXTRA[@]}"
    done
    run "$PYTHON" -m ticket_ensembles.evaluation.mechanism "$ROOT/store" "$OUT"
fi
