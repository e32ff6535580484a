#!/usr/bin/env bash
# Paper A, Figure 4: IoU of the masks of 5 seeds, a heatmap per ticket method (MRPC,
# bert-base-uncased). Seeds 0-4 are Table 1's first five members.
# Writes reports/figure4/mrpc/bert_base_uncased/figure4_<method>.png.
source "$(dirname "$0")/common.sh"
sweep experiment=figure4
CHAIN_SEEDS=4 sweep_chains experiment=figure4
evaluate figure4 task=mrpc model=bert_base_uncased "ensemble.methods=[base_lt,active_lt,random_lt]" \
    "ensemble.groups=[[0,1,2,3,4]]" ensemble.iou_members=5
