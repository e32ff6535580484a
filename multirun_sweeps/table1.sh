#!/usr/bin/env bash
# Paper A, Table 1: bert-base-uncased, MRPC and STS-B, five methods x 20 seeds, k = 5.
# Writes reports/table1/{mrpc,stsb}/bert_base_uncased/ (table1.md, figure3.png, ...).
source "$(dirname "$0")/common.sh"
sweep experiment=table1
sweep_chains experiment=table1
evaluate table1 task=mrpc,stsb model=bert_base_uncased
