"""FLOPs and OoD detection in the evaluation report, members' dense FLOPs and OoD files, image task defaults."""
from __future__ import annotations

import json
from itertools import combinations
from math import comb

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from conftest import CONF, compose_cfg
from evaluation_stores import noisy_logits, write_member
from ticket_ensembles import store
from ticket_ensembles.errors import UserError
from ticket_ensembles.evaluation import EvaluationError, evaluate
from ticket_ensembles.evaluation.metrics import softmax
from ticket_ensembles.evaluation.ood import auroc, ensemble_ood_auroc
from ticket_ensembles.run import train

COST_HEADER = "| method | k | accuracy | nll | ece | train FLOPs (× dense) | inference FLOPs (× dense) |"
OOD_HEADER = "| method | MSP single | MSP ens. (k=3) | entropy single | entropy ens. (k=3) |"


def digits_test_labels() -> np.ndarray:
    """The real labels of the digits eval split: the last 360 of scikit-learn's digits."""
    return load_digits().target[1437:]


def _run(train: float, inference: float) -> dict:
    return {"flops": {"train_member_rel_dense": train, "inference_rel_dense": inference}}


def _ood_logits(rng: np.random.Generator, n: int = 120) -> np.ndarray:
    """Flatter logits than the in-distribution ones, with noise: separable, not perfectly."""
    return rng.normal(0.0, 0.6, (n, 10))


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory):
    """Dense baseline (cost 1 each), DST members (0.4 / 0.3), one EDST run of 3 tickets (0.5 / 0.3 each),
    bagging without run.json (cost unknown); every member but bagging's scores the OoD set "photos"."""
    root = tmp_path_factory.mktemp("digits")
    labels, rng = digits_test_labels(), np.random.default_rng(0)
    members = [("baseline", s, None, _run(1.0, 1.0)) for s in range(4)]
    members += [("freetickets_dst", s, None, _run(0.4, 0.3)) for s in range(4)]
    members += [("freetickets_edst", 0, t, _run(0.5, 0.3)) for t in range(3)]
    for method, seed, ticket, run in members:
        ood = {"ood_photos.npz": (_ood_logits(rng), np.full(120, -1))}
        write_member(root / "store", method, seed, noisy_logits(rng, labels, 1.2, 10), labels, task="digits",
                     model="wrn16_2", ticket=ticket, run=run, extra=ood)
    for s in range(4):
        write_member(root / "store", "bagging", s, noisy_logits(rng, labels, 1.2, 10), labels, task="digits",
                     model="wrn16_2")
    return root


def _digits_cfg(root, *more: str):
    return compose_cfg("evaluate", [f"paths.root_dir={root}", "task=digits", "model=wrn16_2", "ensemble.max_size=3",
                                    "ensemble.groups=[[0,1,2,3]]", *more])


def _section(md: str, header: str) -> list[list[str]]:
    lines = md.splitlines()
    at = lines.index(header)
    rows = []
    for line in lines[at + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_ensemble_flops_beside_accuracy_nll_ece(digits_store):
    out = evaluate(_digits_cfg(digits_store))
    summary = pd.read_csv(out / "summary.csv")
    acc = summary[summary.metric == "accuracy"].set_index(["method", "k"])
    assert acc.loc[("baseline", 2), ["train_flops_rel_dense", "inference_flops_rel_dense"]].tolist() == [2.0, 2.0]
    assert acc.loc[("freetickets_dst", 3), "train_flops_rel_dense"] == pytest.approx(1.2)
    assert acc.loc[("freetickets_dst", 3), "inference_flops_rel_dense"] == pytest.approx(0.9)
    assert acc.loc[("freetickets_edst", 3), "train_flops_rel_dense"] == pytest.approx(1.5)  # the whole run
    assert acc.loc[("freetickets_edst", 1), "train_flops_rel_dense"] == pytest.approx(0.5)
    assert acc.loc[("bagging", 2), ["train_flops_rel_dense", "inference_flops_rel_dense"]].isna().all()
    combos = pd.read_csv(out / "combinations.csv")
    dst = combos[combos.method == "freetickets_dst"]
    assert np.allclose(dst.train_flops_rel_dense, 0.4 * dst.k)
    assert np.allclose(dst.inference_flops_rel_dense, 0.3 * dst.k)
    groups = pd.read_csv(out / "groups.csv").set_index(["method", "group"])
    assert groups.loc[("freetickets_edst", "seed_0"), "train_flops_rel_dense"] == pytest.approx(1.5)  # per run
    assert groups.loc[("baseline", "group0"), "inference_flops_rel_dense"] == pytest.approx(4.0)
    rows = {(r[0], r[1]): r for r in _section((out / "table1.md").read_text(), COST_HEADER)}
    ens = summary.set_index(["method", "k", "metric"]).ens_mean
    single = [f"{ens[('baseline', 1, 'accuracy')]:.2f}"] + [f"{ens[('baseline', 1, m)]:.4f}" for m in ("nll", "ece")]
    assert rows[("BASELINE", "1")][2:] == single + ["1.00", "1.00"]
    assert rows[("FREETICKETS-DST", "3")][-2:] == ["1.20", "0.90"]
    assert rows[("FREETICKETS-EDST", "3")][-2:] == ["1.50", "0.90"]
    assert rows[("BAGGING", "3")][-2:] == ["–", "–"]
    tex = (out / "table1.tex").read_text()  # the .tex holds every section of the .md
    assert "cost (FreeTickets' comparison)" in tex and "calibration" in tex and "OoD detection" in tex


def test_ood_auroc_of_every_subset_against_sklearn(digits_store):
    out = evaluate(_digits_cfg(digits_store))
    ood = pd.read_csv(out / "ood.csv").set_index(["ood", "method", "k"])
    assert "bagging" not in ood.index.get_level_values("method")  # its members scored no OoD set
    folders = [store.member_dir(digits_store / "store", "digits", "wrn16_2", "freetickets_dst", s) for s in range(4)]
    inside = [store.read_predictions(f / "predictions.npz")[0] for f in folders]
    outside = [store.read_predictions(f / "ood_photos.npz")[0] for f in folders]
    is_in = np.r_[np.ones(360), np.zeros(120)]
    for k in (1, 2, 3):
        msp, ent = [], []
        for subset in combinations(range(4), k):
            probs = np.mean([softmax(np.concatenate([inside[i], outside[i]]).astype(np.float64)) for i in subset], 0)
            msp.append(100 * roc_auc_score(is_in, probs.max(-1)))
            ent.append(100 * roc_auc_score(1 - is_in, -(probs * np.log(probs)).sum(-1)))
        row = ood.loc[("photos", "freetickets_dst", k)]
        assert row.n_subsets == comb(4, k)
        assert row.auroc_msp == pytest.approx(np.mean(msp)) and row.auroc_entropy == pytest.approx(np.mean(ent))
        assert row.auroc_msp_std == pytest.approx(np.std(msp, ddof=1))
    assert ood.loc[("photos", "freetickets_edst", 3)].n_subsets == 1  # the run's 3 tickets
    rows = {r[0]: r for r in _section((out / "table1.md").read_text(), OOD_HEADER)}
    single = ood.loc[("photos", "baseline", 1)]
    assert rows["BASELINE"][1] == f"{single.auroc_msp:.2f}" and rows["BASELINE"][3] == f"{single.auroc_entropy:.2f}"
    assert rows["FREETICKETS-EDST"][2] == f"{ood.loc[('photos', 'freetickets_edst', 3)].auroc_msp:.2f}"


def test_auroc_with_ties_matches_sklearn_and_hand_examples():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (5, 40)).astype(float)  # many ties
    positive = rng.random(40) < 0.4
    assert np.allclose(auroc(scores, positive), [100 * roc_auc_score(positive, s) for s in scores])
    sure, unsure = np.array([[4.0, 0.0], [3.0, 0.0]]), np.array([[0.1, 0.0], [0.0, 0.2]])
    assert ensemble_ood_auroc([sure], [unsure]) == {"auroc_msp": 100.0, "auroc_entropy": 100.0}
    with pytest.raises(ValueError, match="both"):
        auroc(scores, np.ones(40, bool))


def test_ood_sets_of_different_sizes_fail_clearly(tmp_path):
    labels, rng = digits_test_labels(), np.random.default_rng(2)
    for s, n in enumerate((120, 120, 120, 100)):
        write_member(tmp_path / "store", "baseline", s, noisy_logits(rng, labels, 1.0, 10), labels, task="digits",
                     model="wrn16_2", extra={"ood_photos.npz": (_ood_logits(rng, n), np.full(n, -1))})
    with pytest.raises(EvaluationError, match="OoD set 'photos' on different numbers of examples"):
        evaluate(_digits_cfg(tmp_path))


# A CPU-second image run of a dense method: WRN-10-1 on 128 digits, 2 epochs of 4 steps.
TINY_DIGITS = ["task=digits", "model=wrn10_1", "data.max_train_samples=128", "data.max_eval_samples=96",
               "trainer.batch_size=32", "trainer.epochs=2", "trainer.progress=false", "data.ood=photos"]


def test_dense_members_write_ood_logits_and_dense_flops(tmp_path):
    paths = [train(compose_cfg("train", [*TINY_DIGITS, f"paths.root_dir={tmp_path}", f"method={m}", f"seed={s}"]))[0]
             for m, s in (("baseline", 0), ("baseline", 1), ("bagging", 0))]
    facts = [json.loads((p / "run.json").read_text()) for p in paths]
    fl = facts[0]["flops"]
    assert fl["inference_rel_dense"] == 1.0 and fl["train_member_rel_dense"] == 1.0  # one dense finetune
    assert fl["run_examples"] == 2 * 128 and fl["train_run"] == pytest.approx(3 * fl["inference_per_example"] * 256)
    assert facts[2]["flops"]["train_member_rel_dense"] == pytest.approx(2 * 115 / 256)  # bagging: 90% of 128
    for path in paths:
        logits, labels = store.read_predictions(path / "ood_photos.npz")
        assert logits.shape == (96, 10) and np.all(labels == -1)
    out = evaluate(compose_cfg("evaluate", [f"paths.root_dir={tmp_path}", "task=digits", "model=wrn10_1",
                                            "ensemble.max_size=1", "ensemble.groups=[[0,1]]",
                                            "ensemble.methods=[baseline]"]))
    ood = pd.read_csv(out / "ood.csv")
    assert ood[["ood", "method", "k", "n_subsets"]].values.tolist() == [["photos", "baseline", 1, 2]]
    assert 0 <= ood.auroc_msp[0] <= 100


def test_glue_rejects_an_ood_set(make_cfg):
    with pytest.raises(UserError, match="image tasks only"):
        train(make_cfg("data.ood=svhn"))


@pytest.mark.parametrize("task,epochs,batch", [("digits", 20, 64), ("cifar10", 250, 128), ("cifar100", 250, 128)])
def test_image_tasks_default_to_the_papers_sgd_recipe(task, epochs, batch):
    t = compose_cfg("train", [f"task={task}"]).trainer
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.lr_schedule) == ("sgd", 0.1, 0.9, 5e-4, "multistep")
    assert (t.epochs, t.batch_size, list(t.lr_milestones)) == (epochs, batch, [0.5, 0.75])


def test_glue_tasks_keep_adamw_and_the_command_line_wins():
    t = compose_cfg("train", ["task=mrpc", "method=freetickets"]).trainer
    assert (t.optimizer, t.lr, t.epochs, t.lr_schedule) == ("adamw", 2e-5, 3.0, "linear")
    t = compose_cfg("train", ["task=digits", "trainer.lr=0.05", "trainer.epochs=3"]).trainer
    assert (t.optimizer, t.lr, t.epochs) == ("sgd", 0.05, 3.0)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_experiments_still_compose(experiment):
    cfg = compose_cfg("train", [f"experiment={experiment}"])
    image = cfg.task.name in ("digits", "cifar10", "cifar100")
    assert cfg.trainer.optimizer == ("sgd" if image else "adamw")
