# Sourced by the sweep scripts: train (a Hydra multirun; complete members are skipped, an
# interrupted ticket member resumes after its last pruning round), then evaluate.
#
# Environment:
#   SWEEP_ARGS   overrides added to every training sweep, e.g.
#                "hydra/launcher=joblib hydra.launcher.n_jobs=2" or
#                "hydra/launcher=submitit_slurm hydra.launcher.partition=gpu"
#   EVAL_ARGS    overrides added to every evaluate.py run
#   CHAIN_SEEDS  the last seed of each active_lt chain (default 9,19: groups 0-9 and 10-19)
#   PYTHON       the interpreter (default .venv/bin/python, else python)
#   DRY_RUN=1    print the commands instead of running them ("+ <command>" on stderr; what
#                follows "+ " pastes into bash)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
CHAIN_SEEDS="${CHAIN_SEEDS:-9,19}"
read -r -a SWEEP_EXTRA <<< "${SWEEP_ARGS:-}"
read -r -a EVAL_EXTRA <<< "${EVAL_ARGS:-}"

# The words of a command as one line that bash reads back as the same words: a word as it is when
# that is safe, else in single quotes ('seed=range(4)', '${paths.root_dir}' stay as they are).
shell_line() {
    local safe='^[A-Za-z0-9_./=:,@%+-]+$' word line=""
    for word in "$@"; do
        if [[ $word =~ $safe ]]; then line+=" $word"; else line+=" '${word//\'/\'\\\'\'}'"; fi
    done
    printf '%s\n' "${line# }"
}

# "+ <command>" on stderr (what follows "+ " pastes into bash), then the command unless DRY_RUN is set
run() {
    echo "+ $(shell_line "$@")" >&2
    if [ -z "${DRY_RUN:-}" ]; then "$@"; fi
}

# train.py -m <overrides>: the script's overrides first, the user's SWEEP_ARGS last (they win)
sweep() { run "$PYTHON" train.py -m "$@" "${SWEEP_EXTRA[@]}"; }

# active_lt: one job per chain; its run builds the chain's earlier seeds first, in order
sweep_chains() { sweep "$@" method=active_lt "seed=$CHAIN_SEEDS"; }

# evaluate.py -m <overrides> into reports/<name>/<task>/<model>/
evaluate() {
    local name="$1"; shift
    run "$PYTHON" evaluate.py -m "$@" "paths.report_dir=\${paths.root_dir}/reports/$name" "experiment_name=$name" "${EVAL_EXTRA[@]}"
}

# Two lanes in parallel (mechanism, table1_minilm): the script defines lane_a and lane_b (sequences
# of sweeps); run_lanes <log folder> <make target> runs both in the background, each lane's output
# into <log folder>/lane_<a|b>.log and its sweeps, finished members and pruning rounds on the
# terminal, and fails naming the lane that failed. DRY_RUN or LANES=1: one after the other.
lane() {
    local name="$1" log="$2/lane_$1.log"
    ( set +e; ( "lane_$name" ); echo $? > "$log.rc" ) 2>&1 | tee -a "$log" \
        | grep --line-buffered -E '^\+ |\] - wrote |round [0-9]+ \(|[Ee]rror' | sed -u "s/^/[lane $name] /"
}
run_lanes() {
    local logs="$1" target="$2"
    if [ -n "${DRY_RUN:-}" ] || [ "${LANES:-2}" = 1 ]; then
        echo "# lane a" >&2
        lane_a
        echo "# lane b" >&2
        lane_b
        return
    fi
    mkdir -p "$logs"
    rm -f "$logs"/lane_?.log.rc
    echo "make $target: two lanes in parallel, full output in $logs/lane_a.log and lane_b.log" >&2
    trap 'trap - INT TERM; kill 0' INT TERM  # Ctrl-C stops both lanes (every member resumes)
    lane a "$logs" &
    lane b "$logs" &
    wait
    local name rc
    for name in a b; do
        rc="$(cat "$logs/lane_$name.log.rc" 2>/dev/null || echo 1)"
        if [ "$rc" != 0 ]; then
            echo "error: lane $name of make $target failed (exit $rc): see $logs/lane_$name.log, fix it and run make $target again (finished members are kept)" >&2
            exit 1
        fi
    done
}
