#!/usr/bin/env bash
# make table1_minilm (results/table1_minilm/README.md): Multi-Ticket's Table 1 at CPU scale with
# members that learn: the full all-MiniLM-L6-v2, one-epoch finetunes at batch 16 and lr 1e-4 (every pruning
# round as long as the final finetune), conf/experiment/table1_minilm.yaml.
#   MRPC (TABLE1_MINILM_TASK=mrpc, the default): BASELINE, BAGGING, BASE-LT, ACTIVE-LT (one chain of
#     8), RANDOM-LT (loss L1, the paper's text) and RANDOM-LT with method.l1_mode=decoupled (its own
#     folder, random_lt_decoupled) x seeds 0-7 (TABLE1_MINILM_SEEDS): 144 one-epoch finetunes.
#   STS-B (TABLE1_MINILM_TASK=stsb): BASELINE, BASE-LT, RANDOM-LT (both modes) x seeds 0-4: 65 one-epoch
#     finetunes of 5,749 rows (the probe that chose the same finetune for it: results/table1_minilm/README.md).
# Resumable across machines: the member records committed under results/table1_minilm/store/
# (predictions, metrics, run.json, config.yaml: no weights, no masks) are copied into the working
# store first, so only missing members train; an active_lt chain is copied only when complete
# (its later seeds need the earlier seeds' masks). Two lanes of one 1-thread process each,
# balanced by finetunes; lane output in <root>/table1_minilm/logs/lane_<a|b>.log.
# Stages (TABLE1_MINILM_STAGES, default "restore train report"): report evaluates what is
# complete into results/table1_minilm/<task>/ and copies the member records beside it.
# TABLE1_MINILM_MATCHED=1 adds a row after the others: RANDOM-LT decoupled at the push per round its
# default tau was chosen for (1.2e-2, docs/lottery.md), folder random_lt_decoupled_matched: tau 1.0
# on MRPC (a round sums lr 1.15e-2), 0.67 on STS-B (1.8e-2); its seeds split between the lanes. The
# report takes that row, with or without the variable, once it has the other rows' seeds.
# TABLE1_MINILM_P20=1 adds two rows after those: BASE-LT and RANDOM-LT (loss L1) pruned to 20 % (two
# rounds, then the final finetune; folders base_lt_p20 and random_lt_p20, one lane each), where the
# 30 % tickets are not winning tickets (STS-B); optional rows of the report, as the matched one.
source "$(dirname "$0")/common.sh"
TASK="${TABLE1_MINILM_TASK:-mrpc}"
STAGES="${TABLE1_MINILM_STAGES:-restore train report}"
OUT="${TABLE1_MINILM_OUT:-results/table1_minilm}"
ROOT="${TE_ROOT:-.}/table1_minilm"
STORE="$ROOT/store"
if [ "$TASK" = mrpc ]; then DEFAULT_SEEDS=8; else DEFAULT_SEEDS=5; fi
SEEDS="${TABLE1_MINILM_SEEDS:-$DEFAULT_SEEDS}"
LAST=$((SEEDS - 1))
ALL="seed=range($SEEDS)"
LANE_ARGS=(trainer.num_threads=1 trainer.progress=false)
sweep() { run "$PYTHON" train.py -m experiment=table1_minilm "task=$TASK" "$@" "${LANE_ARGS[@]}" "${SWEEP_EXTRA[@]}"; }
DECOUPLED=(method=random_lt method.l1_mode=decoupled method.folder=random_lt_decoupled)
has() { [[ " $STAGES " == *" $1 "* ]]; }
MATCHED="${TABLE1_MINILM_MATCHED:-}"
if [ "$TASK" = mrpc ]; then MATCHED_TAU=1.0; else MATCHED_TAU=0.67; fi
HALF=$((SEEDS / 2))
MATCHED_ROW=(method=random_lt method.l1_mode=decoupled "method.l1_tau=$MATCHED_TAU" method.folder=random_lt_decoupled_matched)
matched() {  # matched a: seeds 0..HALF-1; matched b: the rest (4 * seeds finetunes in all)
    if [ -z "$MATCHED" ]; then return; fi
    if [ "$1" = a ]; then sweep "seed=range($HALF)" "${MATCHED_ROW[@]}"; else sweep "seed=range($HALF,$SEEDS)" "${MATCHED_ROW[@]}"; fi
}
P20="${TABLE1_MINILM_P20:-}"
p20() {  # p20 a: BASE-LT at 20 %; p20 b: RANDOM-LT at 20 % (3 * seeds finetunes each)
    if [ -z "$P20" ]; then return; fi
    if [ "$1" = a ]; then sweep "$ALL" method=base_lt method.prune_ratio=0.2 method.folder=base_lt_p20
    else sweep "$ALL" method=random_lt method.prune_ratio=0.2 method.folder=random_lt_p20; fi
}

# lanes balanced by one-epoch finetunes (a ticket is 4: three pruning rounds and the final one)
if [ "$TASK" = mrpc ]; then
    lane_a() {  # the chain first (its seeds run in order), 4*8 + 4*8 + 8 = 72 finetunes
        sweep method=active_lt "method.group_size=$SEEDS" "seed=$LAST"
        sweep "$ALL" "${DECOUPLED[@]}"
        sweep "$ALL" method=bagging
        matched a
        p20 a
    }
    lane_b() {  # 8 + 4*8 + 4*8 = 72 finetunes
        sweep "$ALL" method=baseline
        sweep "$ALL" method=base_lt
        sweep "$ALL" method=random_lt
        matched b
        p20 b
    }
    METHODS="baseline,bagging,base_lt,active_lt,random_lt,random_lt_decoupled"
else  # RANDOM-LT's seeds split between the lanes: SPLIT = 5 * seeds / 8 balances them (5 seeds: 33 and 32)
    SPLIT=$(((5 * SEEDS) / 8))
    lane_a() {  # seeds + 4 * seeds + 4 * (seeds - SPLIT) finetunes
        sweep "$ALL" method=baseline
        sweep "$ALL" "${DECOUPLED[@]}"
        if [ "$SPLIT" -lt "$SEEDS" ]; then sweep "seed=range($SPLIT,$SEEDS)" method=random_lt; fi
        matched a
        p20 a
    }
    lane_b() {  # 4 * seeds + 4 * SPLIT finetunes
        sweep "$ALL" method=base_lt
        if [ "$SPLIT" -gt 0 ]; then sweep "seed=range($SPLIT)" method=random_lt; fi
        matched b
        p20 b
    }
    METHODS="baseline,base_lt,random_lt,random_lt_decoupled"
fi

if has restore; then
    run "$PYTHON" multirun_sweeps/table1_minilm_report.py restore --committed "$OUT/store" --store "$STORE" \
        --task "$TASK" --seeds "$SEEDS"
fi
if has train; then
    run_lanes "$ROOT/logs" table1_minilm
fi
if has report; then
    run "$PYTHON" multirun_sweeps/table1_minilm_report.py report --store "$STORE" --task "$TASK" --seeds "$SEEDS" \
        --methods "$METHODS" --optional random_lt_decoupled_matched,base_lt_p20,random_lt_p20 --out "$OUT" --python "$PYTHON" "${EVAL_EXTRA[@]}"
fi
