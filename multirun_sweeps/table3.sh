#!/usr/bin/env bash
# Paper A, Table 3: Table 1 with roberta-base (MRPC and STS-B, five methods x 20 seeds).
# Writes reports/table3/{mrpc,stsb}/roberta_base/.
source "$(dirname "$0")/common.sh"
sweep experiment=table3
sweep_chains experiment=table3
evaluate table3 task=mrpc,stsb model=roberta_base
