"""Sweeps through the real SLURM launcher on a real cluster: members, requeue, time limits, failures.

Every run is `python train.py -m hydra/launcher=submitit_slurm ...` on the tiny real setting
(MiniLM cut to 1 layer, 32 MRPC rows, fp32). Two jobs that must outlast a SLURM time limit
wait on a member lock held by the test (as they would behind another worker) instead of
burning CPU: the time limit, SIGUSR2, submitit's requeue and the resume are all real.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import (ROOT, HeldLock, compose_cfg, job_folders, job_log, launch, restart_cluster, starts,
                      train_args, wait_until)
from ticket_ensembles import maskio, store
from ticket_ensembles.run import train

pytestmark = pytest.mark.usefixtures("cluster")

MODEL = "minilm_l6_L1"
ACTIVE = ["method=active_lt", "method.group_size=3", "method.prune_step=0.1", "method.prune_ratio=0.1"]
RANDOM = ["method=random_lt", "method.prune_step=0.05", "method.prune_ratio=0.5"]  # 10 short rounds
# rounds long enough (about 3 s each on a quiet 2-core machine) that a requeue lands mid-member:
# with the short rounds a quiet machine finished the member in the 4 s SLURM took to kill the step
REQUEUED = [*RANDOM, "method.epochs_per_round=8"]


def method_dir(root: Path, method: str) -> Path:
    return root / "store" / "mrpc" / MODEL / method


def reference_members(glue_dir: Path, root: Path, method_args: list[str], seeds: list[int]) -> dict[int, Path]:
    """Members built in this process, one seed after the other, with the basic launcher's code path."""
    from conftest import SMALL

    out = {}
    for seed in seeds:
        cfg = compose_cfg("train", [*SMALL, *method_args, f"data.glue_dir={glue_dir}", f"paths.root_dir={root}",
                                    f"seed={seed}"])
        [out[seed]] = train(cfg)
    return out


def assert_same(member: Path, reference: Path, costs: bool = True) -> dict:
    assert store.is_complete(member), member
    got, labels = store.read_predictions(member / "predictions.npz")
    want, want_labels = store.read_predictions(reference / "predictions.npz")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(labels, want_labels)
    mask, ref_mask = maskio.load_mask(member / "mask.npz"), maskio.load_mask(reference / "mask.npz")
    assert mask.keys() == ref_mask.keys() and all(np.array_equal(mask[k], ref_mask[k]) for k in mask)
    facts, ref_facts = (json.loads((m / "run.json").read_text()) for m in (member, reference))
    if costs:
        for key in ("optimizer_steps", "flops", "rounds"):
            assert facts[key] == ref_facts[key], key
    return facts


@pytest.fixture(scope="module")
def chain_reference(glue_dir, tmp_path_factory) -> dict[int, Path]:
    return reference_members(glue_dir, tmp_path_factory.mktemp("chain_reference"), ACTIVE, [0, 1, 2])


@pytest.fixture(scope="module", autouse=True)
def long_jobs(glue_dir, tmp_path_factory):
    """The two jobs that meet a time limit, started first: they run while the other tests do."""
    out = {}
    # time limit: active_lt seed 2 builds seeds 0 and 1 first; seed 1's lock is held until SLURM
    # has signalled the job (SIGUSR2 signal_delay_s before its 2-minute limit) and submitit requeued it
    root = tmp_path_factory.mktemp("time_limit")
    held = HeldLock(method_dir(root, "active_lt"), "seed_1")
    proc = launch(glue_dir, root, *ACTIVE, "seed=2", "hydra.launcher.timeout_min=2",
                  "hydra.launcher.signal_delay_s=30")

    threading.Thread(target=release_after_the_signal, args=(root, proc, held), daemon=True).start()
    out["time_limit"] = (root, proc, time.monotonic())
    # a time limit shorter than the first round: the job waits on seed 0's lock the whole time
    root = tmp_path_factory.mktemp("too_short")
    blocker = HeldLock(method_dir(root, "random_lt"), "seed_0")
    out["too_short"] = (root, launch(glue_dir, root, *RANDOM, "seed=0", "hydra.launcher.timeout_min=1",
                                     "hydra.launcher.signal_delay_s=30"), time.monotonic())
    yield out
    for root, proc, _ in out.values():
        if proc.poll() is None:  # a test failed or was deselected: its jobs must not outlive the session
            proc.kill()
            for folder in job_folders(root):
                subprocess.run(["scancel", folder.name.split("_")[0]], capture_output=True, timeout=30)
    held.release()
    blocker.release()


def release_after_the_signal(root: Path, proc: subprocess.Popen, held: HeldLock) -> None:
    """Release ``held`` once submitit has logged the time-limit signal of the job under ``root``."""
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and proc.poll() is None:
        if any("this job is timed-out" in job_log(f) for f in job_folders(root)):
            break
        time.sleep(0.5)
    held.release()


def test_a_sweep_lands_an_active_lt_chain_in_order_and_evaluate_reads_it(glue_dir, tmp_path, chain_reference):
    started = time.monotonic()
    proc = launch(glue_dir, tmp_path, *ACTIVE, "seed=0,1,2")  # three array tasks at once
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    print(f"sweep of 3 seeds: {time.monotonic() - started:.0f} s")
    assert len(job_folders(tmp_path)) == 3
    for seed, reference in chain_reference.items():
        facts = assert_same(method_dir(tmp_path, "active_lt") / f"seed_{seed}", reference, costs=False)
        assert facts["chain_predecessors"] == list(range(seed))
    res = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), "model=minilm_l6", "model.num_layers=1",
                          f"paths.root_dir={tmp_path}", "ensemble.max_size=3", "ensemble.groups=[[0,1,2]]",
                          "ensemble.methods=[active_lt]"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    groups = pd.read_csv(next((tmp_path / "reports").rglob("groups.csv")))
    assert groups.members.tolist() == ["seed_0 seed_1 seed_2"]


def test_scontrol_requeue_resumes_after_the_last_round_with_the_same_member(glue_dir, tmp_path, tmp_path_factory):
    proc = launch(glue_dir, tmp_path, *REQUEUED, "seed=0")
    work = method_dir(tmp_path, "random_lt") / ".work" / "seed_0"
    wait_until(lambda: (work / "round_1.npz").exists(), 300, "pruning round 1", proc)
    [folder] = job_folders(tmp_path)
    subprocess.run(["scontrol", "requeue", folder.name], check=True, capture_output=True, timeout=30)
    reference = reference_members(glue_dir, tmp_path_factory.mktemp("random_reference"), REQUEUED, [0])[0]
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-3000:]
    assert starts(folder) == 2, job_log(folder)[-3000:]
    facts = assert_same(method_dir(tmp_path, "random_lt") / "seed_0", reference)  # costs of every round too
    assert 1 <= facts["resumed_after_round"] < 10


def test_a_time_limit_signals_the_job_which_is_requeued_and_completes(long_jobs, chain_reference):
    root, proc, started = long_jobs["time_limit"]
    _, err = proc.communicate(timeout=max(1, 480 - (time.monotonic() - started)))
    assert proc.returncode == 0, err[-3000:]
    print(f"time-limit sweep: {time.monotonic() - started:.0f} s")
    [folder] = job_folders(root)
    log = job_log(folder)
    assert "Caught signal SIGUSR2" in log and "this job is timed-out" in log, log[-3000:]
    assert starts(folder) >= 2
    # signal_delay_s (30 s) before the 2-minute limit; SLURM may send it up to a minute early
    started_at, signal_at = (_submitit_time(log, marker) for marker in ("Starting with", "Caught signal SIGUSR2"))
    assert 120 - 30 - 60 <= signal_at - started_at <= 120, signal_at - started_at
    for seed, reference in chain_reference.items():  # the chain kept its order across the requeue
        assert_same(method_dir(root, "active_lt") / f"seed_{seed}", reference)


def _submitit_time(log: str, marker: str) -> float:
    """When submitit first logged a line with ``marker`` (its own time stamp)."""
    import datetime as dt
    import re

    line = next(x for x in log.splitlines() if marker in x and x.startswith("submitit "))
    stamp = re.search(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d+)\)", line)
    return dt.datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S").timestamp() + int(stamp.group(2)) / 1000


def test_a_time_limit_shorter_than_a_round_fails_with_what_to_set(long_jobs):
    root, proc, started = long_jobs["too_short"]
    _, err = proc.communicate(timeout=max(1, 420 - (time.monotonic() - started)))
    print(f"too-short time limit reported after {time.monotonic() - started:.0f} s")
    assert proc.returncode == 1, err[-3000:]
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert line == err.strip().splitlines()[-1] and "Traceback" not in err
    assert "hydra.launcher.timeout_min=1" in line and "before it saved a pruning round" in line, line
    [folder] = job_folders(root)
    assert f"(its logs: {folder}/)" in line
    assert starts(folder) <= 3  # not max_num_timeout (20) silent requeues


@pytest.mark.parametrize(("overrides", "says"), [
    (["hydra.launcher.gpus_per_node=1"], "set hydra.launcher.gpus_per_node=0"),
    (["hydra.launcher.partition=gpu"], "partition 'gpu' does not exist on this cluster: set "
                                       "hydra.launcher.partition to one of debug"),
])
def test_sbatch_refusals_are_one_line_saying_what_to_set(glue_dir, tmp_path, overrides, says):
    res = subprocess.run(train_args(glue_dir, tmp_path, "seed=0", *overrides), cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()  # the sweep's progress bar, then the error
    assert [x for x in lines if x.startswith("error:")] == [lines[-1]] and says in lines[-1], res.stderr
    assert "Traceback" not in res.stderr and "sbatch: error" not in res.stderr


@pytest.mark.parametrize("accounting", [True, False], ids=["with_accounting", "without_accounting"])
def test_failed_and_killed_jobs_are_reported_in_one_line_within_a_minute(glue_dir, tmp_path, long_jobs, accounting):
    for _, proc, _ in long_jobs.values():  # restarting slurmctld below: no job of ours in flight
        proc.wait(timeout=480)
    if not accounting:
        restart_cluster(accounting=False)
    try:
        # a job that fails by itself (its GLUE file is missing) and one killed from outside
        empty, failing, killed = tmp_path / "glue", tmp_path / "failing", tmp_path / "killed"
        empty.mkdir()
        held = HeldLock(method_dir(killed, "baseline"), "seed_0")  # keeps the job waiting until it is killed
        procs = {"failing": launch(empty, failing, "seed=0"), "killed": launch(glue_dir, killed, "seed=0")}
        wait_until(lambda: any(starts(f) for f in job_folders(killed)), 120, "the job to start", procs["killed"])
        subprocess.run(["scancel", job_folders(killed)[0].name], check=True, timeout=30)
        results = {name: (*proc.communicate(timeout=300), time.time()) for name, proc in procs.items()}
        held.release()
    finally:
        if not accounting:
            restart_cluster(accounting=True)
    for name, root in [("failing", failing), ("killed", killed)]:
        _, err, ended = results[name]
        assert procs[name].returncode == 1, err[-3000:]
        lines = err.strip().splitlines()
        [line] = [x for x in lines if x.startswith("error:")]
        assert line == lines[-1] and "Traceback" not in err, err[-3000:]
        [folder] = job_folders(root)
        job_ended = max(p.stat().st_mtime for p in folder.iterdir())
        assert ended - job_ended < 60, f"{name}: reported {ended - job_ended:.0f} s after the job ended"
        assert line.endswith(f"(its logs: {folder}/)"), line
    [line] = [x for x in results["failing"][1].splitlines() if x.startswith("error:")]
    assert line.startswith("error: job #0 (") and f"GLUE file {empty}/MRPC/train.tsv not found" in line, line
    [line] = [x for x in results["killed"][1].splitlines() if x.startswith("error:")]
    assert line.startswith("error: a job of the sweep failed: ") and "CANCELLED" in line, line
