#!/usr/bin/env bash
# make mechanism (docs/lottery.md): do the L1 regularisers diversify the masks (Figure 4), and at
# what accuracy cost? conf/experiment/mechanism.yaml has the setting (MiniLM cut to 2 layers,
# full MRPC, quarter-epoch pruning rounds, fp32, length-grouped batches). One store per L1 setting
# holds both stages, each member resumable:
#   accuracy  seeds 0-2 of base_lt and of random_lt / active_lt at each mode's default tau, with
#             the full final finetune (their single-member dev accuracy, Table 1 over k <= 3)
#   masks     seeds 3-4 of the same (5 seeds for Figure 4's heatmaps; final finetune cut to 0.02
#             epoch: it never changes a mask), and the tau grid: random_lt, seeds 0-2, decoupled
#             tau MECHANISM_TAUS_DECOUPLED (2,8) and loss tau MECHANISM_TAUS_LOSS_EXTRA (1e-2)
# then the report into MECHANISM_OUT (default results/mechanism). MECHANISM_STAGES=report makes
# only the report. The jobs run in MECHANISM_LANES (2) lanes of sequential sweeps, one 1-thread
# process each, balanced by optimizer steps (lane a 2,310, lane b 2,475); their output goes to
# <root>/mechanism/logs/lane_<a|b>.log, and the terminal shows each sweep and finished member.
# An active_lt lane runs seeds 0-2 before 3-4: a chain builds on its earlier seeds' masks.
source "$(dirname "$0")/common.sh"
STAGES="${MECHANISM_STAGES:-train report}"
LANES="${MECHANISM_LANES:-2}"
# two lanes: one torch thread each (2 cores); the user's SWEEP_ARGS come after these and win
if [ "$LANES" = 1 ]; then LANE_ARGS=(); else LANE_ARGS=(trainer.num_threads=1 trainer.progress=false); fi
sweep() { run "$PYTHON" train.py -m "$@" "${LANE_ARGS[@]}" "${SWEEP_EXTRA[@]}"; }
OUT="${MECHANISM_OUT:-results/mechanism}"
ROOT="${TE_ROOT:-.}/mechanism"
TAUS_DECOUPLED="${MECHANISM_TAUS_DECOUPLED:-2,8}"  # beside the default 4
TAUS_LOSS_EXTRA="${MECHANISM_TAUS_LOSS_EXTRA:-1e-2}"  # beside the loss default 1e-4: Adam saturates
ACC=(experiment=mechanism "seed=range(3)")  # full final finetune
MASK=(experiment=mechanism trainer.epochs=0.02)  # masks only
has() { [[ " $STAGES " == *" $1 "* ]]; }

# one method at its mode's default tau (method.l1_tau null): accuracy seeds 0-2, then mask seeds 3-4
defaults_of() { sweep "${ACC[@]}" "$@"; sweep "${MASK[@]}" seed=3,4 "$@"; }
lane_a() {
    defaults_of method=active_lt method.l1_mode=decoupled
    defaults_of method=random_lt method.l1_mode=decoupled
    sweep "${MASK[@]}" "seed=range(3)" method=random_lt method.l1_mode=decoupled "method.l1_tau=$TAUS_DECOUPLED"
    sweep "${MASK[@]}" seed=3,4 method=base_lt
}
lane_b() {
    defaults_of method=active_lt method.l1_mode=loss
    sweep "${ACC[@]}" method=base_lt
    defaults_of method=random_lt method.l1_mode=loss
    sweep "${MASK[@]}" "seed=range(3)" method=random_lt method.l1_mode=loss "method.l1_tau=$TAUS_LOSS_EXTRA"
}

if has train; then
    run_lanes "$ROOT/logs" mechanism
fi
if has report; then
    STORE="$ROOT/store"
    # base_lt has no L1 term: its members (in the loss store) stand in every other setting's Table 1
    for setting in "$STORE"/*_tau*/; do
        for model in "$STORE"/loss_tau0.0001/*/*/; do
            [ -d "$model/base_lt" ] || continue
            rel="${model#"$STORE"/loss_tau0.0001/}"
            dest="$setting$rel"
            if [ -d "$dest" ] && [ ! -e "${dest}base_lt" ]; then
                run ln -s "$(realpath --relative-to="$dest" "$model/base_lt")" "${dest}base_lt"
            fi
        done
    done
    # Table 1/2 of the accuracy stage's tickets (seeds 0-2: k <= 3, 3 pairs), one report per L1 setting
    for store in "$STORE"/*_tau*/; do
        methods=()  # those with all 3 accuracy-stage seeds (a run cut short may have fewer)
        for m in base_lt active_lt random_lt; do
            n=0
            for s in 0 1 2; do
                for f in "$store"*/*/"$m"/seed_"$s"; do
                    [ -e "$f/COMPLETE" ] && grep -qE '^  epochs: 1(\.0)?$' "$f/config.yaml" && n=$((n + 1))
                done
            done
            [ "$n" -eq 3 ] && methods+=("$m")
        done
        [ ${#methods[@]} -gt 1 ] || continue  # base_lt alone: nothing to compare
        list=$(IFS=,; echo "${methods[*]}")
        run "$PYTHON" evaluate.py task=mrpc model=minilm_l6 model.num_layers=2 "paths.store_dir=${store%/}" \
            "ensemble.methods=[$list]" "ensemble.groups=[[0,1,2]]" ensemble.max_size=3 ensemble.iou_members=3 \
            "ensemble.report_dir=$OUT/ensembles_$(basename "$store")" "${EVAL_EXTRA[@]}"
    done
    run "$PYTHON" -m ticket_ensembles.evaluation.mechanism "$STORE" "$OUT"
fi
