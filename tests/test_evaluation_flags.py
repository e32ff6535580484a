"""Members that learned nothing: flagged in members.csv, under Table 1 and in the printed headline, and
left out of every table with ensemble.exclude_degenerate=true; on hand-made stores and real tiny members."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, compose_cfg
from evaluation_stores import noisy_logits, write_member
from test_evaluation_report import mrpc_dev_labels
from ticket_ensembles.evaluation import EvaluationError, evaluate
from ticket_ensembles.evaluation.members import best_constant
from ticket_ensembles.evaluation.report import compute_report
from ticket_ensembles.evaluation.tables import table1
from ticket_ensembles.run import train
from ticket_ensembles.tasks import get_task

RUN = {"device": "cpu", "device_name": "AMD EPYC", "precision": "fp32", "tf32": False}  # cost: one dense model


def one_class(labels: np.ndarray, c: int) -> np.ndarray:
    logits = np.zeros((len(labels), 2))
    logits[:, c] = 1.0
    return logits


def mostly_class_1(labels: np.ndarray) -> np.ndarray:
    """Right on every row but 96 % of them predicted class 1: accuracy 72.3 on MRPC, above the majority's 68.4."""
    logits = one_class(labels, 1)
    zeros = np.flatnonzero(labels == 0)[:16]  # 16 of 408 rows predicted class 0, all correctly
    logits[zeros] = [1.0, 0.0]
    return logits


@pytest.fixture(scope="module")
def flagged_store(tmp_path_factory, glue_dir) -> Path:
    """Real MRPC dev labels (class 1: 68.38 %). baseline: seed 1 always class 1, seed 4 random (about 50 %),
    seed 6 class 1 on 96 % of rows; random_lt: seed 0 always class 0; bagging: every member always class 1."""
    root = tmp_path_factory.mktemp("flags")
    labels, rng = mrpc_dev_labels(glue_dir), np.random.default_rng(0)
    odd = {("baseline", 1): one_class(labels, 1), ("baseline", 4): rng.normal(0, 1, (len(labels), 2)),
           ("baseline", 6): mostly_class_1(labels), ("random_lt", 0): one_class(labels, 0)}
    mask = {"layer.weight": rng.random((8, 6)) > 0.3}
    for method in ("baseline", "random_lt", "bagging"):
        for s in range(8):
            logits = one_class(labels, 1) if method == "bagging" else odd.get((method, s))
            logits = noisy_logits(rng, labels, 1.0) if logits is None else logits
            write_member(root / "store", method, s, logits, labels, run=RUN,
                         mask={"layer.weight": mask["layer.weight"] ^ (rng.random((8, 6)) > 0.9)}
                         if method == "random_lt" else None)
    return root


def cfg(root: Path, *overrides: str):
    return compose_cfg("evaluate", [f"paths.root_dir={root}", "model.name=tiny", "ensemble.max_size=2",
                                    "ensemble.groups=[[0,1,2,3],[4,5,6,7]]", *overrides])


FLAGGED = {("baseline", "seed_1"), ("baseline", "seed_4"), ("baseline", "seed_6"), ("random_lt", "seed_0")} | {
    ("bagging", f"seed_{s}") for s in range(8)}


def test_members_that_learned_nothing_are_flagged_with_why_in_members_csv_table1_and_the_headline(flagged_store, caplog):
    with caplog.at_level(logging.INFO):
        out = evaluate(cfg(flagged_store))
    members = pd.read_csv(out / "members.csv", keep_default_na=False).set_index(["method", "member"])
    flagged = {key for key, why in members.degenerate.items() if why}
    assert flagged == FLAGGED
    why = members.degenerate
    assert why[("baseline", "seed_1")] == ("predicts class 1 for 100.0 % of validation rows; accuracy 68.38 is not more "
                                           "than 1 point above always predicting class 1 (68.38)")
    # about 50 %: below the majority class, both classes predicted
    assert why[("baseline", "seed_4")].startswith("accuracy 4") and why[("baseline", "seed_4")].endswith(
        " is not more than 1 point above always predicting class 1 (68.38)")
    assert why[("baseline", "seed_6")] == "predicts class 1 for 96.1 % of validation rows"  # accuracy 72.30
    assert members.loc[("baseline", "seed_6"), "accuracy"] == pytest.approx(100 * (279 + 16) / 408)
    assert members.loc[("random_lt", "seed_0"), "top_class_share"] == 1.0
    assert all(members.evaluated)  # flagged, still in every table
    combos = pd.read_csv(out / "combinations.csv")
    assert combos.members.str.contains("seed_1").any()
    md = (out / "table1.md").read_text()
    section = md[md.index("## members that learned nothing: in every table"):]
    assert "| BASELINE | seed_6 | predicts class 1 for 96.1 % of validation rows |" in section
    assert md.index("## members that learned nothing") < md.index("calibration")  # right under Table 1
    tex = (out / "table1.tex").read_text()
    assert "% members that learned nothing" in tex and r"96.1 \% of validation rows" in tex
    assert r"\begin{tabular}{lll}" in tex and r"\begin{tabular}{lrrrr}" in tex  # text left, numbers right
    assert "calibration" in tex and "cost (FreeTickets' comparison)" in tex and r"$\times$ dense" in tex
    printed = [r.message for r in caplog.records]
    at = printed.index(next(m for m in printed if m.startswith("members that learned nothing (in every table")))
    assert printed[at + 1:at + 1 + len(FLAGGED)][0] == "  baseline/seed_1: " + why[("baseline", "seed_1")]
    assert at > printed.index(next(m for m in printed if m.startswith("mrpc accuracy, k=2")))


def test_exclude_degenerate_recomputes_every_table_without_them(flagged_store):
    report = compute_report(cfg(flagged_store, "ensemble.exclude_degenerate=true"))
    combos, members = report.combinations, report.members.set_index(["method", "member"])
    used = {(m, name) for m, names in zip(combos.method, combos.members) for name in names.split()}
    assert not used & FLAGGED and "bagging" not in set(report.summary.method)  # no bagging member is left
    assert not any(members.loc[list(FLAGGED), "evaluated"]) and members.evaluated.sum() == 24 - len(FLAGGED)
    acc = members.accuracy
    single = report.summary.set_index(["method", "k", "metric"]).single_mean[("baseline", 1, "accuracy")]
    assert single == pytest.approx(np.mean([acc[[("baseline", f"seed_{s}") for s in g]].mean()
                                            for g in ([0, 2, 3], [5, 7])]))
    assert report.ious["random_lt"][0] == ["seed_1", "seed_2", "seed_3", "seed_4", "seed_5"]  # IoU without seed_0
    groups = report.groups.set_index(["method", "group"])
    assert groups.loc[("baseline", "group1"), ["members", "excluded"]].tolist() == ["seed_5 seed_7", "seed_4 seed_6"]
    md, _ = table1(report.summary, report.setting, None, report.degenerate, report.excluded)
    assert ("## members that learned nothing: left out of every table (ensemble.exclude_degenerate=true); "
            "no member of BAGGING is left") in md
    with pytest.raises(EvaluationError, match=r"ensemble.max_size=3 but method baseline has only 2 member\(s\) in "
                                              r"group1 once ensemble.exclude_degenerate=true leaves out seed_4 seed_6.*"
                                              r"ensemble.exclude_degenerate=false"):
        compute_report(cfg(flagged_store, "ensemble.exclude_degenerate=true", "ensemble.max_size=3"))


def test_members_below_a_study_floor_are_listed_under_table1_and_marked_but_stay_in_the_tables(flagged_store, caplog):
    """ensemble.min_score (results/table1_minilm sets MRPC's 72): every evaluated member below it, and only
    those, in members.csv and under Table 1; the tables keep them. Without the option, no column."""
    plain = compute_report(cfg(flagged_store))
    assert "below_min_score" not in plain.members and plain.below.empty
    with caplog.at_level(logging.WARNING):
        out = evaluate(cfg(flagged_store, "ensemble.min_score=75", "ensemble.exclude_degenerate=true"))
    members = pd.read_csv(out / "members.csv", keep_default_na=False).set_index(["method", "member"])
    assert list(members.columns[list(members.columns).index("degenerate") + 1:][:1]) == ["below_min_score"]
    assert set(members.index[members.below_min_score]) == {key for key, acc in members.accuracy.items() if acc < 75}
    listed = {key for key in members.index[members.below_min_score & members.evaluated]}
    assert listed == {("baseline", "seed_0"), ("baseline", "seed_5"), ("baseline", "seed_7"), ("random_lt", "seed_4")}
    md = (out / "table1.md").read_text()
    section = md[md.index("## members below ensemble.min_score=75 (accuracy): in every table"):]
    section = section[:section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "method" not in line]
    assert len(rows) == len(listed)
    for method, member in listed:
        assert f"| {member} | {members.accuracy[(method, member)]:.2f} |" in section
    combos = pd.read_csv(out / "combinations.csv")
    used = {(m, n) for m, names in zip(combos.method, combos.members) for n in names.split()}
    assert listed <= used  # still ensembled
    assert any(r.message.startswith("members below ensemble.min_score=75 (in every table)") for r in caplog.records)
    with pytest.raises(EvaluationError, match=r"ensemble.min_score=nan must be a finite score"):
        compute_report(cfg(flagged_store, "ensemble.min_score=nan"))


def test_regression_flags_constant_and_uncorrelated_scores_and_best_constant_per_metric(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.uniform(0, 5, 60)
    noise = rng.normal(0, 1, 60)
    uncorrelated = noise - (noise @ (labels - labels.mean())) / ((labels - labels.mean()) ** 2).sum() * labels
    scores = {0: labels + rng.normal(0, 1, 60), 1: np.full(60, 2.5), 2: uncorrelated, 3: -labels}
    for s, logits in scores.items():
        write_member(tmp_path / "store", "baseline", s, logits, labels, task="stsb")
    out = evaluate(compose_cfg("evaluate", [f"paths.root_dir={tmp_path}", "model.name=tiny", "task=stsb",
                                            "ensemble.max_size=2", "ensemble.groups=[[0,1,2,3]]"]))
    why = pd.read_csv(out / "members.csv", keep_default_na=False).set_index("member").degenerate
    assert why["seed_0"] == "" and why["seed_1"] == "pearson undefined (constant predictions)"
    assert why["seed_2"] == "pearson 0.00 is not more than 1 point above a constant score (0.00)"
    assert why["seed_3"] == "pearson -100.00 is not more than 1 point above a constant score (0.00)"
    assert best_constant(get_task("cola"), np.array([0, 1, 1, 1])) == ("always predicting class 0", 0.0)  # Matthews
    assert best_constant(get_task("sst2"), np.array([0, 1, 1, 1])) == ("always predicting class 1", 75.0)


def test_real_tiny_members_one_method_with_two_learning_rates(make_cfg, tmp_path):
    """The tiny setting's members learn nothing (a 1-layer MiniLM, 2 steps on 32 rows) and a second lr is a
    second setting: refused, then ensembled when allowed, flagged, and nothing is left without them."""
    for seed, lr in ((0, "2e-5"), (1, "1e-3")):
        train(make_cfg(f"seed={seed}", f"trainer.lr={lr}", "data.max_train_samples=32"))
    base = [f"paths.root_dir={tmp_path}", *[o for o in TINY if o.startswith("model")], "ensemble.max_size=2",
            "ensemble.groups=[[0,1]]"]
    with pytest.raises(EvaluationError, match=r"^baseline: seed_1 differs from seed_0 in trainer.lr "
                                              r"\(seed_0: 2e-05, seed_1: 0.001\): "):
        evaluate(compose_cfg("evaluate", base))
    out = evaluate(compose_cfg("evaluate", [*base, "ensemble.allow_mixed_settings=true"]))
    members = pd.read_csv(out / "members.csv", keep_default_na=False).set_index("member")
    assert (members.degenerate != "").all(), members.degenerate
    assert (members.device == "cpu").all() and (members.precision == "fp32").all()
    assert (members.tf32.astype(str) == "False").all()
    assert (members.device_name != "").all() and members.fingerprint.nunique() == 2
    with pytest.raises(EvaluationError, match="every evaluated member learned nothing .*exclude_degenerate"):
        evaluate(compose_cfg("evaluate", [*base, "ensemble.allow_mixed_settings=true",
                                          "ensemble.exclude_degenerate=true"]))
