"""evaluate(cfg) on hand-built stores: the protocol's averages, Table 1/2 layout, MNLI, EDST, masks."""
from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_ind

from conftest import compose_cfg
from evaluation_stores import build_methods, noisy_logits, write_member
from ticket_ensembles.evaluation import evaluate
from ticket_ensembles.maskio import load_mask, mask_iou


def mrpc_dev_labels(glue_dir: Path) -> np.ndarray:
    """The real MRPC dev labels (408), in file order."""
    lines = (glue_dir / "MRPC" / "dev.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
    return np.array([int(line.split("\t")[0]) for line in lines])


def eval_cfg(root: Path, *overrides: str):
    return compose_cfg("evaluate", [f"paths.root_dir={root}", "model.name=tiny", *overrides])


@pytest.fixture(scope="module")
def paper_store(tmp_path_factory, glue_dir):
    """Three methods of clearly different quality on real MRPC labels, under bert_base_uncased."""
    root = tmp_path_factory.mktemp("paper")
    labels = mrpc_dev_labels(glue_dir)
    build_methods(root / "store", {"baseline": 2.0, "base_lt": 1.4, "random_lt": 0.9}, range(10), labels,
                  model="bert_base_uncased", masked=("base_lt", "random_lt"))
    return root


def _paper_cfg(root: Path, model: str = "bert_base_uncased", *more: str):
    return compose_cfg("evaluate", [f"paths.root_dir={root}", f"model.name={model}", "ensemble.max_size=3",
                                    "ensemble.groups=[[0,1,2,3,4],[5,6,7,8,9]]", *more])


def test_table1_layout_marks_and_published_figures(paper_store):
    out = evaluate(_paper_cfg(paper_store))
    md = (out / "table1.md").read_text()
    summary = pd.read_csv(out / "summary.csv")
    lines = md.splitlines()
    header = ("| method | single | ens. (k=3) | diff. | p vs BASELINE | p vs BASE-LT "
              "| paper single | paper ens. | paper diff. |")
    at = lines.index(header)
    rows = [line.split(" | ") for line in lines[at + 2:at + 5]]
    assert [r[0] for r in rows] == ["| BASELINE", "| BASE-LT", "| RANDOM-LT"]
    assert lines[at + 2].endswith("| 83.48 | 84.34 | +0.86 |")
    assert lines[at + 4].endswith("| 83.53 | 85.05 | +1.52 |")
    acc = summary[(summary.metric == "accuracy") & (summary.k == 3)].set_index("method")
    assert rows[0][2] == f"{acc.ens_mean['baseline']:.2f}"  # the baseline: no mark
    assert rows[1][2] == f"*{acc.ens_mean['base_lt']:.2f}*"  # better than BASELINE only
    assert rows[2][2] == f"<u>***{acc.ens_mean['random_lt']:.2f}***</u>"  # better than both, and best
    assert rows[2][3] == f"{acc.ens_mean['random_lt'] - acc.single_mean['random_lt']:+.2f}"
    f1_header = next(line for line in lines if line.startswith("| method") and "paper" not in line)
    assert f1_header.startswith("| method | single | ens. (k=3) | diff.")
    assert "## validation · f1" in md and "calibration" in md
    tex = (out / "table1.tex").read_text()
    assert r"\textbf{\textit{" in tex and r"\underline{" in tex and "83.48" in tex and r"\toprule" in tex


def test_table3_figures_for_roberta_and_none_for_other_models(paper_store, tmp_path):
    src = paper_store / "store" / "mrpc" / "bert_base_uncased"
    for model in ("roberta_base", "minilm_l6"):
        (tmp_path / "store" / "mrpc").mkdir(parents=True, exist_ok=True)
        (tmp_path / "store" / "mrpc" / model).symlink_to(src, target_is_directory=True)
    md = (evaluate(_paper_cfg(tmp_path, "roberta_base")) / "table1.md").read_text()
    assert "Table 3" in md and "| 87.77 | 88.47 | +0.70 |" in md
    md = (evaluate(_paper_cfg(tmp_path, "minilm_l6")) / "table1.md").read_text()
    assert "paper" not in md


def test_protocol_averages_within_groups_then_over_groups(tmp_path, glue_dir):
    labels = mrpc_dev_labels(glue_dir)
    # unequal groups: 4 members (6 pairs) and 3 members (3 pairs), so pooled and group means differ
    build_methods(tmp_path / "store", {"baseline": 1.5, "bagging": 1.2}, range(7), labels, model="tiny")
    out = evaluate(eval_cfg(tmp_path, "ensemble.max_size=2", "ensemble.groups=[[0,1,2,3],[4,5,6]]"))
    combos, summary = pd.read_csv(out / "combinations.csv"), pd.read_csv(out / "summary.csv")
    pairs = combos[(combos.method == "bagging") & (combos.k == 2)]
    assert len(pairs) == comb(4, 2) + comb(3, 2)
    row = summary[(summary.method == "bagging") & (summary.k == 2) & (summary.metric == "accuracy")].iloc[0]
    assert row.ens_mean == pytest.approx(pairs.groupby("group").accuracy.mean().mean())
    singles = combos[(combos.method == "bagging") & (combos.k == 1)]
    assert row.single_mean == pytest.approx(singles.groupby("group").accuracy.mean().mean())
    assert row["diff"] == pytest.approx(row.ens_mean - row.single_mean)
    base = combos[(combos.method == "baseline") & (combos.k == 2)]
    assert row.p_vs_baseline == pytest.approx(ttest_ind(pairs.accuracy, base.accuracy).pvalue)
    assert set(summary.metric) == {"accuracy", "f1", "nll", "ece", "brier"}


def test_mnli_reports_matched_and_mismatched(tmp_path):
    rng = np.random.default_rng(0)
    matched, mismatched = rng.integers(0, 3, 90), rng.integers(0, 3, 70)
    for method in ("baseline", "random_lt"):
        for s in range(3):
            extra = {"predictions_validation_mismatched.npz": (noisy_logits(rng, mismatched, 1.0, 3), mismatched)}
            write_member(tmp_path / "store", method, s, noisy_logits(rng, matched, 1.0, 3), matched,
                         task="mnli", extra=extra)
    out = evaluate(eval_cfg(tmp_path, "task=mnli", "ensemble.max_size=3", "ensemble.groups=[[0,1,2]]"))
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.split) == {"validation_matched", "validation_mismatched"}
    md = (out / "table1.md").read_text()
    assert "## validation_matched · accuracy" in md and "## validation_mismatched · accuracy" in md


def test_edst_tickets_are_ensembled_per_run_and_k_stops_at_the_tickets(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 80)
    for s in (0, 1):
        for t in range(3):
            write_member(tmp_path / "store", "freetickets", s, noisy_logits(rng, labels, 1.0), labels, ticket=t)
            write_member(tmp_path / "store", "baseline", 10 * s + t, noisy_logits(rng, labels, 1.0), labels)
    out = evaluate(eval_cfg(tmp_path, "ensemble.max_size=3", "ensemble.groups=[[0,1,2],[10,11,12]]"))
    combos = pd.read_csv(out / "combinations.csv")
    edst = combos[combos.method == "freetickets"]
    assert set(edst.group) == {"seed_0", "seed_1"}
    assert edst.groupby("k").size().to_dict() == {1: 6, 2: 6, 3: 2}
    assert set(edst[edst.k == 3].members) == {"seed_0_ticket_0 seed_0_ticket_1 seed_0_ticket_2",
                                              "seed_1_ticket_0 seed_1_ticket_1 seed_1_ticket_2"}


def test_edst_k_is_capped_at_the_tickets_per_run(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 50)
    for t in range(3):
        write_member(tmp_path / "store", "freetickets", 0, noisy_logits(rng, labels, 1.0), labels, ticket=t)
    out = evaluate(eval_cfg(tmp_path, "ensemble.max_size=5"))
    summary = pd.read_csv(out / "summary.csv")
    assert summary.k.max() == 3
    assert "(k=3)" in (out / "table1.md").read_text()


def test_missing_seeds_are_reported(tmp_path):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 40)
    build_methods(tmp_path / "store", {"baseline": 1.0}, [0, 1, 2, 4, 5, 7], labels, model="tiny")
    out = evaluate(eval_cfg(tmp_path, "ensemble.max_size=2", "ensemble.groups=[[0,1,2],[3,4,5]]"))
    groups = pd.read_csv(out / "groups.csv", keep_default_na=False).set_index("group")
    assert groups.loc["group1", "missing_seeds"] == "3"
    assert groups.loc["group1", "members"] == "seed_4 seed_5"
    assert groups.loc["(none)", "members"] == "seed_7"  # in no group: reported, not evaluated
    members = pd.read_csv(out / "members.csv").set_index("member")
    assert list(members.index) == ["seed_0", "seed_1", "seed_2", "seed_4", "seed_5", "seed_7"]
    assert members.loc["seed_7", "group"] == "(none)" and not members.loc["seed_7", "evaluated"]
    assert members.loc["seed_4", "group"] == "group1" and members.loc["seed_4", "evaluated"]


def test_diversity_and_mask_overlap(paper_store):
    out = evaluate(_paper_cfg(paper_store))
    div = pd.read_csv(out / "diversity.csv").set_index("method")
    assert (div.pairs == 2 * comb(5, 2)).all()
    assert div.disagreement["random_lt"] < div.disagreement["baseline"]  # less noise, fewer disagreements
    folder = paper_store / "store" / "mrpc" / "bert_base_uncased" / "base_lt"
    masks = [load_mask(folder / f"seed_{s}" / "mask.npz") for s in range(5)]
    expected = np.mean([mask_iou(masks[i], masks[j]) for i in range(5) for j in range(i + 1, 5)])
    assert div.mask_iou["base_lt"] == pytest.approx(expected)
    assert (out / "figure4_base_lt.png").stat().st_size > 1000
    assert not (out / "figure4_baseline.png").exists()  # dense: no mask
    assert (out / "figure3.png").stat().st_size > 1000
    table2 = (out / "table2.md").read_text()
    assert "| method | Q ↓ | ratio errors ↑ | neg. double fault ↑ | disagreement ↑ | correlation ↓" in table2
    assert "Table 2" in table2 and "| BASELINE | 0.96 | 0.72 | -0.12 | 0.09 | 0.69 |" in table2


def test_stsb_regression_report(tmp_path):
    rng = np.random.default_rng(4)
    labels = rng.uniform(0, 5, 60).astype(np.float32)
    for s in range(3):
        write_member(tmp_path / "store", "baseline", s, labels + rng.normal(0, 1, 60), labels, task="stsb")
    out = evaluate(eval_cfg(tmp_path, "task=stsb", "ensemble.max_size=3", "ensemble.groups=[[0,1,2]]"))
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary.metric) == {"pearson", "spearmanr"}
    assert "score_correlation" in pd.read_csv(out / "diversity.csv")


def test_config_composes_and_rejects_an_unknown_combiner_at_composition(tmp_path):
    cfg = eval_cfg(tmp_path)
    assert cfg.ensemble.max_size == 5 and list(cfg.ensemble.groups[1]) == list(range(10, 20))
    assert cfg.ensemble.combiner.value == "prob_mean" and cfg.ensemble.ece_bins == 15
    assert list(eval_cfg(tmp_path, "ensemble=freetickets").ensemble.groups) == [[0, 1, 2]]
    with pytest.raises(Exception, match="combiner"):
        eval_cfg(tmp_path, "ensemble.combiner=median")


def test_figure3_names_task_model_and_unit_and_figure4_text_is_readable_on_every_cell(paper_store):
    from ticket_ensembles.evaluation.figures import draw_figure3, draw_figure4
    from ticket_ensembles.evaluation.report import compute_report

    report = compute_report(_paper_cfg(paper_store))
    fig = draw_figure3(report.summary, report.headline, report.baseline, report.setting)
    assert fig._suptitle.get_text() == "mrpc · bert_base_uncased · prob_mean"
    assert fig.axes[0].get_ylabel() == "accuracy − BASELINE (points)"
    same = draw_figure4("base_lt", ["seed_0", "seed_1"], np.ones((2, 2)))  # every cell the darkest colour
    assert {t.get_color() for t in same.axes[0].texts} == {"white"}
    spread = draw_figure4("base_lt", ["seed_0", "seed_1", "seed_2"], np.array([[1, .9, .95], [.9, 1, .9], [.95, .9, 1]]))
    colours = {t.get_text(): t.get_color() for t in spread.axes[0].texts}
    assert colours == {"1.000": "white", "0.900": "black", "0.950": "black"}  # dark purple; yellow, teal
