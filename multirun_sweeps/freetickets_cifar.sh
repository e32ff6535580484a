#!/usr/bin/env bash
# Paper B (FreeTickets), the CIFAR tables: WRN-28-10 from scratch on cifar10 or cifar100.
#   dense: 4 dense runs (250 epochs); DST ensemble: 3 sparse runs (250 epochs, density 0.2);
#   EDST ensemble: ONE run of 450 epochs giving 3 members.
# Usage: multirun_sweeps/freetickets_cifar.sh cifar10|cifar100
# Writes reports/freetickets_<task>/<task>/wrn28_10/ (M = 3: dense, DST, EDST; accuracy, NLL,
# ECE, diversity, FLOPs in run.json) and reports/freetickets_<task>_dense4/ (dense, M = 4).
source "$(dirname "$0")/common.sh"
task="${1:?usage: freetickets_cifar.sh cifar10|cifar100}"
case "$task" in cifar10|cifar100) ;; *) echo "error: task must be cifar10 or cifar100, not $task" >&2; exit 2 ;; esac
sweep experiment=dense_cifar "task=$task"
sweep "experiment=freetickets_$task" method.variant=dst "seed=range(3)"
# the reference README's EDST command regrows by gradient, as its DST command (the experiment's rigl)
sweep "experiment=freetickets_$task" method.variant=edst seed=0
evaluate "freetickets_$task" "task=$task" model=wrn28_10 ensemble=freetickets
evaluate "freetickets_${task}_dense4" "task=$task" model=wrn28_10 "ensemble.methods=[baseline]" \
    "ensemble.groups=[[0,1,2,3]]" ensemble.max_size=4
