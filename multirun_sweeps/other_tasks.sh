#!/usr/bin/env bash
# Paper A, Section 4: CoLA, QNLI, SST-2 and MNLI, where the tickets were less accurate and
# no method beat BASELINE overall: five methods x 20 seeds, bert-base-uncased.
# Writes reports/other_tasks/{cola,qnli,sst2,mnli}/bert_base_uncased/.
source "$(dirname "$0")/common.sh"
sweep experiment=other_tasks
sweep_chains experiment=other_tasks
evaluate other_tasks task=cola,qnli,sst2,mnli model=bert_base_uncased
