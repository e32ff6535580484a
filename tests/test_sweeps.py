"""The paper sweeps (multirun_sweeps/, make targets): what they launch, and one run end to end."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import joblib
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import ROOT, TINY, compose_cfg, entry_python
from ticket_ensembles import store
from ticket_ensembles.config import register_configs

TARGETS = ["table1", "table2", "table3", "figure3", "figure4", "sst2_footnote", "other_tasks",
           "freetickets_cifar10", "freetickets_cifar100"]
# experiment -> (model, jobs of its own sweep)
EXPERIMENTS = {
    "table1": ("bert_base_uncased", 2 * 4 * 20),
    "table2": ("bert_base_uncased", 3 * 20),
    "table3": ("roberta_base", 2 * 4 * 20),
    "figure4": ("bert_base_uncased", 2 * 5),
    "sst2_footnote": ("bert_base_uncased", 20),
    "other_tasks": ("bert_base_uncased", 4 * 4 * 20),
    "dense_cifar": ("wrn28_10", 4),
}


def sweep_jobs(experiment: str, *overrides: str) -> list[list[str]]:
    """The jobs `train.py -m experiment=<experiment> <overrides>` launches (the basic sweeper's product)."""
    from hydra import compose, initialize_config_dir

    from conftest import CONF

    register_configs()
    parser = OverridesParser.create()
    fixed = [o.input_line for o in parser.parse_overrides(list(overrides)) if not o.is_sweep_override()]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", *fixed], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.params or {}).items()]
    axes: dict[str, list[str]] = {}  # the config's sweep first; the command line replaces a key in place
    for o in parser.parse_overrides([*params, *overrides]):
        key = o.get_key_element()
        axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
    return [list(job) for job in itertools.product(*axes.values())]


@pytest.mark.parametrize("experiment", list(EXPERIMENTS))
def test_each_experiment_composes_and_sweeps_the_paper_setting(experiment):
    model, n_jobs = EXPERIMENTS[experiment]
    jobs = sweep_jobs(experiment)
    assert len(jobs) == n_jobs
    seen = set()
    for job in jobs:  # every (task, method) of the sweep composes with the paper's trainer
        key = tuple(o for o in job if not o.startswith("seed="))
        if key not in seen:
            seen.add(key)
            cfg = compose_cfg("train", [f"experiment={experiment}", *job])
            assert cfg.model.name == model and cfg.experiment_name == experiment
    if model != "wrn28_10":
        assert (cfg.trainer.epochs, cfg.trainer.lr, cfg.trainer.batch_size) == (3.0, 2e-5, 32)


def test_active_lt_chains_are_one_job_per_chain_in_seed_order():
    jobs = sweep_jobs("table1", "method=active_lt", "seed=9,19")
    assert [[o for o in j if o.split("=")[0] in ("task", "seed")] for j in jobs] == [
        ["task=mrpc", "seed=9"], ["task=mrpc", "seed=19"], ["task=stsb", "seed=9"], ["task=stsb", "seed=19"]]
    cfg = compose_cfg("train", ["experiment=table1", "method=active_lt", "seed=9"])
    assert cfg.method.group_size == 10  # seed 9 builds 0-8 first; seed 19 builds 10-18


def test_sst2_footnote_prunes_20_percent_into_its_own_store():
    cfg = compose_cfg("train", ["experiment=sst2_footnote", "method=random_lt", "method.prune_ratio=0.2"])
    assert cfg.task.name == "sst2" and cfg.method.prune_ratio == 0.2
    assert Path(cfg.paths.store_dir).name == "store_sst2_prune20"


def dry_run(target: str) -> list[list[str]]:
    """The commands a make target runs (DRY_RUN=1 prints them instead)."""
    env = {**os.environ, "DRY_RUN": "1", "SWEEP_ARGS": "", "EVAL_ARGS": ""}
    res = subprocess.run(["make", "-s", target], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return [shlex.split(line[2:]) for line in res.stderr.splitlines() if line.startswith("+ ")]


@pytest.mark.parametrize("target", TARGETS)
def test_each_make_target_sweeps_then_evaluates_configs_that_compose(target):
    commands = dry_run(target)
    scripts = [Path(c[1]).name for c in commands]
    assert "train.py" in scripts and scripts[-1] == "evaluate.py"
    assert scripts.index("evaluate.py") > max(i for i, s in enumerate(scripts) if s == "train.py")
    jobs = []
    for cmd in commands:
        assert cmd[2] == "-m"  # multiruns: resumable sweeps
        overrides = [o for o in cmd[3:] if not o.startswith("paths.report_dir=")]
        if Path(cmd[1]).name == "evaluate.py":
            first = [re.sub(r"^(task=[^,]+),.*", r"\1", o) for o in overrides]  # one task of the sweep
            # the evaluation's W&B run lands in the study's group (<experiment>/<task>/<model>), not default/
            assert compose_cfg("evaluate", first).experiment_name != "default"
        else:
            assert any(o.startswith("experiment=") for o in overrides)
            jobs += sweep_jobs(next(o.split("=")[1] for o in overrides if o.startswith("experiment=")),
                               *[o for o in overrides if not o.startswith("experiment=")])
    methods = {o for job in jobs for o in job if o.startswith("method=")}
    assert ("method=base_lt" in methods) == ("method=active_lt" in methods)  # ticket tables: all three


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.slow
def test_figure4_target_runs_on_joblib_workers_and_a_rerun_trains_nothing(glue_dir, tmp_path):
    """make figure4 at tiny scale on 2 joblib workers: 4 members, then active_lt seeds 0 and 1 in
    parallel (seed 1 must wait for seed 0's mask), then the report; a rerun only skips."""
    tiny = [*TINY, "data.max_train_samples=32", f"data.glue_dir={glue_dir}", f"paths.root_dir={tmp_path}",
            "seed=range(2)", "method.prune_step=0.1", "method.prune_ratio=0.2",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    env = {**os.environ, "SWEEP_ARGS": " ".join(tiny), "PYTHON": entry_python(),
           "EVAL_ARGS": f"model=minilm_l6 model.num_layers=1 paths.root_dir={tmp_path} "
                        "ensemble.groups=[[0,1]] ensemble.max_size=2 ensemble.iou_members=2"}
    first = subprocess.run(["bash", "multirun_sweeps/figure4.sh"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    members = store.list_members(tmp_path / "store", "mrpc", "minilm_l6_L1")
    assert {m: sorted(v) for m, v in members.items()} == {m: ["seed_0", "seed_1"]
                                                         for m in ("active_lt", "base_lt", "random_lt")}
    chain = [json.loads((members["active_lt"][f"seed_{s}"] / "run.json").read_text())["chain_predecessors"]
             for s in (0, 1)]
    assert chain == [[], [0]]
    logs = "".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    threads = re.findall(r"torch threads: (\d+)", logs)
    assert threads and set(threads) == {str(max(1, joblib.cpu_count() // 2))}  # cores / n_jobs
    report = tmp_path / "reports" / "figure4" / "mrpc" / "minilm_l6_L1"
    assert {f"figure4_{m}.png" for m in ("base_lt", "active_lt", "random_lt")} <= {p.name for p in report.iterdir()}
    before = tree_digest(tmp_path / "store")
    env["SWEEP_ARGS"] = " ".join(tiny[:-2])  # the rerun on the basic launcher: fewer processes to start
    again = subprocess.run(["bash", "multirun_sweeps/figure4.sh"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert tree_digest(tmp_path / "store") == before  # every member skipped, nothing rebuilt


def test_each_printed_command_pastes_into_bash_as_the_words_it_ran(tmp_path):
    """What follows "+ " in a sweep's output (DRY_RUN=1 prints only these lines), pasted into bash,
    gives the very words the script ran: `seed=range(4)`, `${paths.root_dir}`, brackets, a quote."""
    record = tmp_path / "argv.jsonl"
    fake = tmp_path / "python"  # stands in for the interpreter: records the words it was given
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "
                    f"\"$@\" >> {record}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "SWEEP_ARGS": "seed=range(4) trainer.lr=2e-5",
           "EVAL_ARGS": "experiment_name=it's_mine"}
    env.pop("DRY_RUN", None)
    res = subprocess.run(["bash", "multirun_sweeps/figure4.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    printed = [line[2:] for line in res.stderr.splitlines() if line.startswith("+ ")]
    ran = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(printed) == len(ran) == 3
    for line, argv in zip(printed, ran):
        pasted = subprocess.run(["bash", "-c", f"printf '%s\\0' {line}"], capture_output=True, text=True, timeout=30)
        assert pasted.returncode == 0, (line, pasted.stderr)
        assert pasted.stdout.split("\0")[:-1] == [str(fake), *argv], line
    assert "'seed=range(4)'" in printed[0] and "'paths.report_dir=${paths.root_dir}/reports/figure4'" in printed[-1]
