#!/usr/bin/env bash
# Paper A, Figure 3: ensemble score relative to BASELINE for k = 1..5, MRPC and STS-B
# (bert-base-uncased). The members are Table 1's: after `make table1` nothing is trained.
# Writes reports/figure3/{mrpc,stsb}/bert_base_uncased/figure3.png.
source "$(dirname "$0")/common.sh"
sweep experiment=table1
sweep_chains experiment=table1
evaluate figure3 task=mrpc,stsb model=bert_base_uncased
