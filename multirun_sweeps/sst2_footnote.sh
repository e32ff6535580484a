#!/usr/bin/env bash
# Paper A, footnote: SST-2 with a 20% pruning ratio, BASELINE vs RANDOM-LT, 20 seeds
# (bert-base-uncased), in its own store (store_sst2_prune20/).
# Writes reports/sst2_footnote/sst2/bert_base_uncased/.
source "$(dirname "$0")/common.sh"
sweep experiment=sst2_footnote method=baseline
sweep experiment=sst2_footnote method=random_lt method.prune_ratio=0.2
evaluate sst2_footnote task=sst2 model=bert_base_uncased "paths.store_dir=\${paths.root_dir}/store_sst2_prune20"
