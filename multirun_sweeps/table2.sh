#!/usr/bin/env bash
# Paper A, Table 2: diversity (Q, ratio errors, negative double fault, disagreement,
# correlation) of BASELINE and the three ticket methods on MRPC, bert-base-uncased, 20 seeds.
# The members are Table 1's: after `make table1` nothing is trained.
# Writes reports/table2/mrpc/bert_base_uncased/table2.md.
source "$(dirname "$0")/common.sh"
sweep experiment=table2
sweep_chains experiment=table2
evaluate table2 task=mrpc model=bert_base_uncased "ensemble.methods=[baseline,base_lt,active_lt,random_lt]"
