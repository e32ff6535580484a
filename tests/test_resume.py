"""Kill a ticket run at several points (SIGKILL, SIGTERM), relaunch it, and get the same member.

A random_lt member with two pruning rounds (10% each) on the tiny real setting. Every crashed
run is a real `train.py` process; the uninterrupted reference is built in-process.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY, compose_cfg, entry_python, run_script
from ticket_ensembles import maskio, store
from ticket_ensembles.run import train

# one thread per run: six runs share the cores, and the same thread count keeps CPU sums identical
TICKET = [*TINY, "method=random_lt", "method.prune_step=0.1", "method.prune_ratio=0.2", "seed=0",
          "data.max_train_samples=32", "trainer.num_threads=1"]
KILL_POINTS = {  # point -> pruning rounds a relaunch finds done (tests/killpoint.py)
    "mid_round_2_write": 1,
    "mid_member_write": 2,
    "before_rename": 2,
}


# EDST: one run, two tickets (members seed_0_ticket_0 and seed_0_ticket_1)
EDST = [*TINY, "method=freetickets", "method.variant=edst", "method.num_tickets=2", "method.exploration_epochs=1",
        "method.refinement_epochs=1", "seed=0", "data.max_train_samples=32", "trainer.num_threads=1"]


def args_for(glue_dir: Path, root: Path, settings: list[str] = TICKET) -> list[str]:
    return [*settings, f"data.glue_dir={glue_dir}", f"paths.root_dir={root}"]


def method_dir(root: Path) -> Path:
    return root / "store" / "mrpc" / "minilm_l6_L1" / "random_lt"


def round_files(root: Path) -> list[str]:
    return sorted(p.name for p in (method_dir(root) / ".work" / "seed_0").glob("round_*.npz"))


def leftovers(root: Path) -> list[str]:
    return leftovers_in(method_dir(root))


def leftovers_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def kill_when_round_1_is_saved(targets: list[tuple[subprocess.Popen, Path, int]]) -> None:
    """Send each process its signal as soon as its round 1's mask exists: it is then in round 2.
    All are watched at once: one that starts faster must not finish while we wait on another."""
    deadline = time.monotonic() + 300
    waiting = list(targets)
    while waiting and time.monotonic() < deadline:
        for target in list(waiting):
            proc, root, sig = target
            if proc.poll() is not None:
                waiting.remove(target)  # finished before we could kill it: the assertions will say so
            elif round_files(root):
                proc.send_signal(sig)
                waiting.remove(target)
        time.sleep(0.02)


@pytest.fixture(scope="module", autouse=True)
def keep_torch_threads():
    """train(cfg) applies trainer.num_threads to this process; give later tests theirs back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def crashed(glue_dir, tmp_path_factory):
    """Every crash scenario, run in parallel: point -> (root, return code, stderr)."""
    procs = {}
    for point in [*KILL_POINTS, "sigkill_in_round_2", "sigterm_in_round_2", "edst"]:
        root = tmp_path_factory.mktemp(point)
        killpoint = {"edst": "after_1st_member"}.get(point, point)
        # a SIGKILL from outside must hit the very process that trains: the real interpreter for that one
        python = sys.executable if point == "sigkill_in_round_2" else entry_python()
        cmd = ([python, str(ROOT / "tests" / "killpoint.py"), killpoint] if point in [*KILL_POINTS, "edst"]
               else [python, str(ROOT / "train.py")])
        args = args_for(glue_dir, root, EDST if point == "edst" else TICKET)
        procs[point] = (root, subprocess.Popen([*cmd, *args], cwd=ROOT, text=True,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    kill_when_round_1_is_saved([(procs[point][1], procs[point][0], sig) for point, sig in
                                (("sigkill_in_round_2", signal.SIGKILL), ("sigterm_in_round_2", signal.SIGTERM))])
    out = {}
    for point, (root, proc) in procs.items():
        _, err = proc.communicate(timeout=600)
        out[point] = (root, proc.returncode, err)
    return out


@pytest.fixture(scope="module")
def reference(glue_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    [member] = train(compose_cfg("train", args_for(glue_dir, root)))
    return member


def assert_same_member(member: Path, reference: Path, resumed_after: int) -> None:
    assert store.is_complete(member)
    got, labels = store.read_predictions(member / "predictions.npz")
    want, want_labels = store.read_predictions(reference / "predictions.npz")
    np.testing.assert_array_equal(got, want)  # bit for bit, on CPU
    np.testing.assert_array_equal(labels, want_labels)
    mask, ref_mask = maskio.load_mask(member / "mask.npz"), maskio.load_mask(reference / "mask.npz")
    assert mask.keys() == ref_mask.keys() and all(np.array_equal(mask[k], ref_mask[k]) for k in mask)
    facts, ref_facts = (json.loads((m / "run.json").read_text()) for m in (member, reference))
    assert facts["resumed_after_round"] == resumed_after
    # the training cost counts every round, also those of the killed run (issue 15)
    for key in ("optimizer_steps", "flops", "rounds"):
        assert facts[key] == ref_facts[key], key


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkilled_run_resumes_to_the_uninterrupted_member(point, crashed, reference, glue_dir):
    root, code, err = crashed[point]
    assert code == -signal.SIGKILL, err[-2000:]
    member = method_dir(root) / "seed_0"
    assert not member.exists()  # nothing half-built is visible under the member's name
    done = KILL_POINTS[point]
    assert round_files(root) == [f"round_{r}.npz" for r in range(1, done + 1)]
    if point in ("mid_member_write", "before_rename"):
        assert leftovers(root), "the kill should have left the member's temporary folder behind"
    [path] = train(compose_cfg("train", args_for(glue_dir, root)))  # the same settings again
    assert path == member
    assert_same_member(member, reference, resumed_after=done)
    assert leftovers(root) == [] and not (method_dir(root) / ".work" / "seed_0").exists()


@pytest.mark.slow
def test_sigkill_at_an_arbitrary_moment_in_round_2(crashed, reference, glue_dir):
    root, code, err = crashed["sigkill_in_round_2"]
    assert code == -signal.SIGKILL, err[-2000:]
    assert round_files(root) == ["round_1.npz"]
    train(compose_cfg("train", args_for(glue_dir, root)))
    assert_same_member(method_dir(root) / "seed_0", reference, resumed_after=1)


@pytest.mark.slow
def test_an_edst_run_killed_between_tickets_keeps_the_first_and_adds_the_rest(crashed, glue_dir):
    root, code, err = crashed["edst"]
    assert code == -signal.SIGKILL, err[-2000:]
    mdir = root / "store" / "mrpc" / "minilm_l6_L1" / "freetickets_edst"
    first = mdir / "seed_0_ticket_0"
    assert store.is_complete(first) and not (mdir / "seed_0_ticket_1").exists()
    kept = (first / "predictions.npz").read_bytes()
    members = train(compose_cfg("train", args_for(glue_dir, root, EDST)))  # the same settings again
    assert [p.name for p in members] == ["seed_0_ticket_0", "seed_0_ticket_1"]
    assert all(store.is_complete(p) for p in members) and (first / "predictions.npz").read_bytes() == kept
    assert leftovers_in(mdir) == []


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_the_same_command_continues(crashed, reference, glue_dir):
    root, code, err = crashed["sigterm_in_round_2"]
    assert code == 128 + signal.SIGTERM, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: stopped by SIGTERM") and "Traceback" not in err
    assert round_files(root) == ["round_1.npz"] and leftovers(root) == []
    again = run_script("train.py", *args_for(glue_dir, root))
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_member(method_dir(root) / "seed_0", reference, resumed_after=1)


def test_a_member_moved_aside_by_a_killed_overwrite_is_restored(make_cfg, tmp_path):
    [member] = train(make_cfg("seed=7"))
    before = (member / "predictions.npz").read_bytes()
    # the state of `overwrite=true` killed between its two renames: the old member moved aside
    member.rename(member.with_name(".seed_7.old-0123abcd"))
    (member.parent / ".seed_7.partial-89abcdef").mkdir()
    stamp = time.time()
    train(make_cfg("seed=7"))  # without overwrite: restored, not retrained
    assert (member / "predictions.npz").read_bytes() == before
    assert (member / "predictions.npz").stat().st_mtime < stamp
    assert sorted(p.name for p in member.parent.iterdir() if not p.name.startswith(".locks")) == ["seed_7"]
