"""`python evaluate.py` as a user runs it: a full report, and one clear line per bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_script
from evaluation_stores import build_methods, noisy_logits, write_member
from test_evaluation_report import mrpc_dev_labels

OUTPUTS = {"summary.csv", "combinations.csv", "diversity.csv", "members.csv", "table1.md", "table1.tex",
           "table2.md", "figure3.png"}
SMALL = ["model.name=tiny", "ensemble.max_size=3", "ensemble.groups=[[0,1,2,3]]"]


def evaluate_cli(root: Path, *overrides: str):
    return run_script("evaluate.py", f"paths.root_dir={root}", f"hydra.run.dir={root}/logs/hydra", *overrides,
                      timeout=120)


def test_end_to_end_report(tmp_path, glue_dir):
    labels = mrpc_dev_labels(glue_dir)
    build_methods(tmp_path / "store", {"baseline": 1.5, "random_lt": 1.2}, range(4), labels, masked=("random_lt",))
    res = evaluate_cli(tmp_path, *SMALL)
    assert res.returncode == 0, res.stderr[-2000:]
    out = tmp_path / "reports" / "mrpc" / "tiny"
    assert OUTPUTS | {"figure4_random_lt.png"} <= {p.name for p in out.iterdir()}
    assert "RANDOM-LT" in res.stdout and "report written to" in res.stdout
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_multirun_writes_one_report_per_task(tmp_path):
    rng = np.random.default_rng(0)
    mrpc, stsb = rng.integers(0, 2, 40), rng.uniform(0, 5, 40)
    for s in range(4):
        write_member(tmp_path / "store", "baseline", s, noisy_logits(rng, mrpc, 1.0), mrpc)
        write_member(tmp_path / "store", "baseline", s, stsb + rng.normal(0, 1, 40), stsb, task="stsb")
    res = run_script("evaluate.py", "-m", "task=mrpc,stsb", f"paths.root_dir={tmp_path}", *SMALL, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    for task in ("mrpc", "stsb"):
        assert OUTPUTS - {"table2.md"} <= {p.name for p in (tmp_path / "reports" / task / "tiny").iterdir()}


def _store(root: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, n)
    build_methods(root / "store", {"baseline": 1.0}, range(4), labels)
    return root / "store" / "mrpc" / "tiny" / "baseline"


def _replace_predictions(member: Path, logits, labels) -> None:
    (member / "predictions.npz").unlink()
    np.savez(member / "predictions.npz", logits=np.asarray(logits, np.float32), labels=labels)


def _labels(member: Path) -> np.ndarray:
    with np.load(member / "predictions.npz") as z:
        return z["labels"]


def _fewer_rows(folder: Path) -> None:
    labels = _labels(folder / "seed_2")[:-1]
    _replace_predictions(folder / "seed_2", np.zeros((len(labels), 2)), labels)


def _shuffled_labels(folder: Path) -> None:
    labels = _labels(folder / "seed_1")[::-1].copy()
    _replace_predictions(folder / "seed_1", np.zeros((len(labels), 2)), labels)


def _nan_logits(folder: Path) -> None:
    labels = _labels(folder / "seed_3")
    logits = np.zeros((len(labels), 2))
    logits[5, 1] = np.nan
    _replace_predictions(folder / "seed_3", logits, labels)


def _label_out_of_range(value: int):
    def spoil(folder: Path) -> None:
        labels = _labels(folder / "seed_0").copy()
        labels[3] = value
        _replace_predictions(folder / "seed_0", np.zeros((len(labels), 2)), labels)

    return spoil


def _truncated(folder: Path) -> None:
    path = folder / "seed_0" / "predictions.npz"
    path.write_bytes(path.read_bytes()[:200])


BAD_INPUTS = {
    "missing store": (lambda folder: None, ["paths.store_dir=/nonexistent/store"], "no complete members under"),
    "empty store": (lambda folder: None, ["paths.store_dir=${paths.root_dir}/empty"], "COMPLETE marker file"),
    "label 2 in MRPC": (_label_out_of_range(2), [], "holds label 2, outside task mrpc's classes 0..1"),
    "label -1 (GLUE test)": (_label_out_of_range(-1), [], "holds label -1, outside task mrpc's classes 0..1 (-1 marks"),
    "unknown method": (lambda folder: None, ["ensemble.methods=[random_lt]"],
                       "method 'random_lt' has no complete members"),
    "N differs": (_fewer_rows, [], "was predicted on different validation data"),
    "labels differ": (_shuffled_labels, [], "was predicted on different validation data"),
    "NaN logits": (_nan_logits, [], "NaN or inf logits"),
    "truncated file": (_truncated, [], "is unreadable"),
    "k too large": (lambda folder: None, ["ensemble.max_size=5"], "ensemble.max_size=5 but method baseline has only 4"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, case):
    spoil, overrides, message = BAD_INPUTS[case]
    folder = _store(tmp_path)
    (tmp_path / "empty").mkdir()
    spoil(folder)
    res = evaluate_cli(tmp_path, *SMALL, *overrides)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr
    assert not (tmp_path / "reports").exists()


def test_a_failed_run_leaves_the_previous_report_untouched(tmp_path):
    folder = _store(tmp_path)
    assert evaluate_cli(tmp_path, *SMALL).returncode == 0
    out = tmp_path / "reports" / "mrpc" / "tiny"
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _nan_logits(folder)
    assert evaluate_cli(tmp_path, *SMALL).returncode == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in out.parent.iterdir()] == ["tiny"]


def test_evaluation_never_imports_a_deep_learning_framework():
    code = ("import sys, ticket_ensembles.evaluation.report, ticket_ensembles.config; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def test_an_experiment_given_to_evaluate_says_where_the_scoring_settings_are():
    for override in ("experiment=demo", "+experiment=demo"):
        res = run_script("evaluate.py", override)
        assert res.returncode == 2, res.stderr
        assert "evaluate.py has no experiment group" in res.stderr and "docs/demo.md" in res.stderr
        assert res.stderr.count("\n") == 1, res.stderr  # one line
