#!/usr/bin/env bash
# Sensitivity check: the sparse runs of make freetickets_digits again with method.member_checkpoint=last
# (the same training trajectories, the last model kept), two at a time, beside the main study's dense
# members. Run from the repository root after make freetickets_digits; reports into
# outputs/freetickets_digits_last/reports/freetickets_digits_last/.
set -euo pipefail
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
ROOT=outputs/freetickets_digits_last
C=(experiment=freetickets_digits method.member_checkpoint=last trainer.precision=fp32 trainer.num_threads=1 trainer.progress=false paths.root_dir=$ROOT)
date -u +"start %Y-%m-%dT%H:%M:%SZ"
start=$(date +%s)
mkdir -p $ROOT
( .venv/bin/python train.py "${C[@]}" seed=0 && .venv/bin/python train.py "${C[@]}" seed=1 ) > $ROOT.a.log 2>&1 &
( .venv/bin/python train.py "${C[@]}" method.variant=edst seed=0 && .venv/bin/python train.py "${C[@]}" seed=2 ) > $ROOT.b.log 2>&1 &
wait
mkdir -p $ROOT/store/digits/wrn16_2 && ln -sfn "$PWD/outputs/freetickets_digits/store/digits/wrn16_2/baseline" $ROOT/store/digits/wrn16_2/baseline
.venv/bin/python evaluate.py task=digits model=wrn16_2 ensemble=freetickets paths.root_dir=$ROOT "paths.report_dir=$ROOT/reports/freetickets_digits_last"
echo "wall $(( $(date +%s) - start )) s"
date -u +"end %Y-%m-%dT%H:%M:%SZ"
