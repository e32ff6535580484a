"""results/table1_minilm/: the committed member records regenerate every committed report but the mask IoU."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

from conftest import ROOT, entry_python, run_script

STUDY = ROOT / "results" / "table1_minilm"
TASKS = sorted(p.parent.name for p in STUDY.glob("*/study.json"))
# made from the masks, which are not committed (figure4_*.png) or drawn by matplotlib (*.png)
NOT_FROM_RECORDS = ("figure", "sparsity")
COMPARED = ("table1.md", "table2.md", "summary.csv", "combinations.csv", "diversity.csv", "groups.csv")


def test_the_study_has_committed_reports():
    assert TASKS, f"no report under {STUDY}: run make table1_minilm (or its report stage) and commit it"


@pytest.mark.parametrize("task", TASKS)
def test_evaluate_on_the_committed_records_regenerates_the_committed_reports(task, tmp_path):
    study = json.loads((STUDY / task / "study.json").read_text())
    res = run_script("evaluate.py", *study["evaluate_overrides"], f"paths.store_dir={STUDY / 'store'}",
                     f"ensemble.report_dir={tmp_path / 'report'}", "ensemble.iou_members=0")
    assert res.returncode == 0, res.stderr[-2000:]
    committed = STUDY / task
    for name in COMPARED:
        if not (committed / name).is_file():
            continue
        ours, theirs = (tmp_path / "report" / name).read_text(), (committed / name).read_text()
        if name in ("table2.md", "diversity.csv"):  # their mask-IoU cells need the masks
            ours, theirs = _without_iou(ours), _without_iou(theirs)
        assert ours == theirs, f"{name} differs from the committed one"
    members = (tmp_path / "report" / "members.csv").read_text().splitlines()
    assert members == (committed / "members.csv").read_text().splitlines()


def _without_iou(text: str) -> str:
    """The text without its mask-IoU column (a Markdown table's or a CSV's), which needs the masks."""
    out, drop = [], None
    for line in text.splitlines():
        sep = "|" if line.startswith("|") else ","
        cells = line.split(sep)
        if any("iou" in c.lower() for c in cells):
            drop = [i for i, c in enumerate(cells) if "iou" in c.lower()]
        elif not line.strip() or (sep == "|" and not line.startswith("|")):
            drop = None if sep == "|" else drop
        if drop and len(cells) > max(drop):
            cells = [c for i, c in enumerate(cells) if i not in drop]
        out.append(sep.join(cells))
    return "\n".join(out)


def lanes(task: str, matched: bool = False, p20: bool = False) -> dict[str, list[tuple[str, int]]]:
    """The (store folder, seed) members each lane of `make table1_minilm` trains, from its DRY_RUN."""
    env = {**os.environ, "DRY_RUN": "1", "TABLE1_MINILM_TASK": task, "TE_ROOT": "/nonexistent",
           "TABLE1_MINILM_MATCHED": "1" if matched else "", "TABLE1_MINILM_P20": "1" if p20 else ""}
    res = subprocess.run(["make", "-s", "table1_minilm"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out: dict[str, list[tuple[str, int]]] = {}
    lane = None
    for line in res.stderr.splitlines():
        if line.startswith("# lane "):
            lane = out.setdefault(line.removeprefix("# lane "), [])
        elif line.startswith("+ ") and " train.py " in line:
            words = dict(w.split("=", 1) for w in shlex.split(line[2:]) if "=" in w)
            folder = words.get("method.folder", words["method"])
            start, stop = (re.fullmatch(r"range\((?:(\d+),)?(\d+)\)", words["seed"]).groups() if "range" in words["seed"]
                           else (None, None))
            seeds = range(int(start or 0), int(stop)) if stop else [int(words["seed"])]
            if words["method"] == "active_lt":  # one job: the chain's last seed builds seeds 0.. first
                seeds = range(int(words["seed"]) + 1)
            lane.extend((folder, s) for s in seeds)
    return out


MRPC_ROWS = ["baseline", "bagging", "base_lt", "active_lt", "random_lt", "random_lt_decoupled"]


STSB_ROWS = ["baseline", "base_lt", "random_lt", "random_lt_decoupled"]


@pytest.mark.parametrize("task, methods, seeds, matched, p20", [
    ("mrpc", MRPC_ROWS, 8, False, False),
    ("stsb", STSB_ROWS, 5, False, False),
    ("mrpc", [*MRPC_ROWS, "random_lt_decoupled_matched"], 8, True, False),
    ("stsb", [*STSB_ROWS, "base_lt_p20", "random_lt_p20"], 5, False, True)])
def test_each_member_is_trained_once_and_the_lanes_carry_the_same_finetunes(task, methods, seeds, matched, p20):
    got = lanes(task, matched, p20)
    assert sorted(got) == ["a", "b"]
    members = got["a"] + got["b"]
    assert sorted(members) == sorted((m, s) for m in methods for s in range(seeds))  # each once, none missing
    # a ticket is 4 one-epoch finetunes (three pruning rounds and the final one), 3 when pruned to 20 %
    finetunes = {lane: sum(1 if m in ("baseline", "bagging") else 3 if m.endswith("_p20") else 4 for m, _ in ms)
                 for lane, ms in got.items()}
    assert abs(finetunes["a"] - finetunes["b"]) <= 1, finetunes


def report_stage(store, out, *args, timeout: int) -> subprocess.CompletedProcess:
    """`table1_minilm_report.py report` on STS-B's 5 seeds, BASELINE and BASE-LT as the study's rows (it and
    its evaluate.py run forked from the preloaded interpreter, as the sweep scripts' runs are in the tests)."""
    python = entry_python()
    res = subprocess.run([python, str(ROOT / "multirun_sweeps" / "table1_minilm_report.py"), "report",
                          "--store", str(store), "--task", "stsb", "--seeds", "5", "--methods", "baseline,base_lt",
                          "--out", str(out), "--python", python, *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


def test_a_report_before_any_table_still_commits_the_complete_members_records(tmp_path):
    """A session that ends with one row complete keeps its members: the report stage copies their
    records (no weights, no mask) for the next machine's restore even when there is no table to make."""
    src = STUDY / "store" / "stsb" / "minilm_l6" / "baseline" / "seed_0"
    store = tmp_path / "store"
    member = store / "stsb" / "minilm_l6" / "baseline" / "seed_0"
    shutil.copytree(src, member)
    (member / "mask.npz").write_bytes(b"not committed")
    half = store / "stsb" / "minilm_l6" / "base_lt" / "seed_0"  # no COMPLETE: a member still training
    half.mkdir(parents=True)
    (half / "run.json").write_text("{}")
    out = tmp_path / "results"
    res = report_stage(store, out, timeout=120)
    assert "fewer than two methods" in res.stdout
    copied = out / "store" / "stsb" / "minilm_l6"
    assert sorted(p.name for p in (copied / "baseline" / "seed_0").iterdir()) == sorted(
        p.name for p in src.iterdir())  # everything but the mask
    assert not (copied / "base_lt").exists()
    assert not (out / "stsb").exists()  # no table, no report folder


def test_an_optional_row_joins_the_report_only_with_the_other_rows_seeds(tmp_path):
    """TABLE1_MINILM_MATCHED's row is optional: while it has fewer complete seeds than the study's rows
    it is left out of the tables instead of cutting every row down to its seeds."""
    store = tmp_path / "store"
    for method, seeds in (("baseline", 5), ("base_lt", 5), ("random_lt", 3)):
        for seed in range(seeds):
            shutil.copytree(STUDY / "store" / "stsb" / "minilm_l6" / method / f"seed_{seed}",
                            store / "stsb" / "minilm_l6" / method / f"seed_{seed}")

    def report() -> dict:
        report_stage(store, tmp_path / "results", "--optional", "random_lt", "ensemble.iou_members=0", timeout=300)
        return json.loads((tmp_path / "results" / "stsb" / "study.json").read_text())

    study = report()  # as a required row, its 3 seeds would cut the table to seeds 0-2
    assert (study["seeds_evaluated"], study["methods_evaluated"]) == (5, ["baseline", "base_lt"])
    for seed in (3, 4):
        shutil.copytree(STUDY / "store" / "stsb" / "minilm_l6" / "random_lt" / f"seed_{seed}",
                        store / "stsb" / "minilm_l6" / "random_lt" / f"seed_{seed}")
    study = report()
    assert (study["seeds_evaluated"], study["methods_evaluated"]) == (5, ["baseline", "base_lt", "random_lt"])
