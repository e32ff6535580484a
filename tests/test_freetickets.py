"""FreeTickets end to end: DST/EDST members on digits (offline image path) and on real MRPC."""
from __future__ import annotations

import json
import re
from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import compose_cfg
from ticket_ensembles import store
from ticket_ensembles.errors import UserError
from ticket_ensembles.evaluation import evaluate
from ticket_ensembles.evaluation.costs import ensemble_cost, member_cost
from ticket_ensembles.evaluation.ood import ensemble_ood_auroc, ood_auroc
from ticket_ensembles.maskio import load_mask, mask_iou
from ticket_ensembles.methods.base import RunContext
from ticket_ensembles.methods.freetickets import FreeTickets, MemberChoice, Phase, dense_grad_steps, trainer_overrides
from ticket_ensembles.pruning import DEFAULT_PRUNABLE_PATTERNS
from ticket_ensembles.run import train
from ticket_ensembles.sparse.flops import examples_in_steps

# A CPU-second image run: WRN-10-1 on 128 digits, 4 steps per epoch, topology moves every 2 steps.
DIGITS = ["experiment=freetickets_digits", "model=wrn10_1", "data.max_train_samples=128",
          "data.max_eval_samples=96", "trainer.batch_size=32", "trainer.epochs=2", "trainer.progress=false",
          "method.update_frequency=2", "method.exploration_epochs=1", "method.refinement_epochs=1"]


def digits_cfg(root, *overrides):
    return compose_cfg("train", [*DIGITS, f"paths.root_dir={root}", *overrides])


def _facts(path):
    return json.loads((path / "run.json").read_text())


@pytest.fixture(scope="module")
def edst_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("edst")
    members = train(digits_cfg(root, "method.variant=edst", "method.num_tickets=3", "seed=0"))
    return root, members


def test_experiment_configs_hold_the_papers_setting():
    cfg = compose_cfg("train", ["experiment=freetickets_cifar10"])
    t, m = cfg.trainer, cfg.method
    assert (cfg.task.name, cfg.model.depth, cfg.model.width) == ("cifar10", 28, 10)
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.batch_size, t.epochs) == ("sgd", 0.1, 0.9, 5e-4, 128, 250)
    assert (m.density, m.exploration_epochs, m.refinement_epochs, m.num_tickets) == (0.2, 150, 100, 3)
    assert m.exploration_epochs + m.num_tickets * m.refinement_epochs == 450
    assert compose_cfg("train", ["experiment=freetickets_cifar100"]).task.name == "cifar100"
    # what the reference ran (issue 13): constant death rate, 45k/5k and best-validation members,
    # kept momentum, decay on every parameter, its normalisation; cosine stays the GLUE default
    for name in ("freetickets_cifar10", "freetickets_cifar100", "freetickets_digits"):
        c = compose_cfg("train", [f"experiment={name}"])
        assert (c.method.death_rate_schedule.value, c.method.member_checkpoint.value,
                c.method.regrown_momentum.value) == ("constant", "best_val", "keep")
        assert c.data.validation_fraction == 0.1 and c.trainer.decay_all_parameters and c.method.growth.value == "rigl"
    dense = compose_cfg("train", ["experiment=dense_cifar", "task=cifar100"])
    assert dense.data.validation_fraction == 0.1 and dense.data.image_preprocessing == "freetickets"
    assert cfg.data.image_preprocessing == "freetickets"
    assert compose_cfg("train", ["method=freetickets"]).method.death_rate_schedule.value == "cosine"


def test_dst_digits_member(tmp_path):
    [path] = train(digits_cfg(tmp_path, "seed=1", "method.member_checkpoint=last"))
    assert path.parent.name == "freetickets_dst" and path.name == "seed_1" and store.is_complete(path)
    logits, labels = store.read_predictions(path / "predictions.npz")
    assert logits.shape == (96, 10) and set(np.unique(labels)) <= set(range(10))
    facts = _facts(path)
    assert facts["density"] == pytest.approx(0.2, abs=1e-3)
    assert facts["topology_updates"] == 3  # steps 2, 4, 6 of 8 (never the last)
    assert facts["dense_grad_steps"] == facts["flops"]["planned_dense_grad_steps"] == 3
    fl = facts["flops"]
    assert 0 < fl["inference_rel_dense"] < 1 and 0 < fl["train_member_rel_dense"] < 1
    assert fl["run_examples"] == 2 * 115 and fl["members_per_run"] == 1  # 128 rows, the last 13 validate
    assert facts["member_checkpoint"] == "last" and facts["member_step"] == facts["optimizer_steps"] == 8
    assert facts["validation_history"] == [[8, facts["validation_accuracy"]]]
    mask = load_mask(path / "mask.npz")
    assert "conv1.weight" in mask and "fc.weight" in mask and not any("bn" in n for n in mask)
    assert sum(int(m.sum()) for m in mask.values()) / sum(m.size for m in mask.values()) == pytest.approx(facts["density"])
    ood_logits, ood_labels = store.read_predictions(path / "ood_photos.npz")
    assert ood_logits.shape == (96, 10) and np.all(ood_labels == -1)


def test_edst_writes_num_tickets_members_with_distinct_masks(edst_store):
    root, members = edst_store
    assert [p.name for p in members] == ["seed_0_ticket_0", "seed_0_ticket_1", "seed_0_ticket_2"]
    assert all(store.is_complete(p) and p.parent.name == "freetickets_edst" for p in members)
    masks = [load_mask(p / "mask.npz") for p in members]
    for a, b in combinations(masks, 2):
        assert mask_iou(a, b) < 0.9  # each refinement starts with moving 80% of the active weights
    facts = [_facts(p) for p in members]
    assert [f["ticket"] for f in facts] == [0, 1, 2]
    assert [f["optimizer_steps"] for f in facts] == [8, 12, 16]  # exploration 4 + 4 per ticket
    assert all(f["density"] == pytest.approx(facts[0]["density"]) for f in facts)
    assert facts[-1]["dense_grad_steps"] == facts[-1]["flops"]["planned_dense_grad_steps"]
    assert facts[0]["flops"]["train_member"] == pytest.approx(facts[0]["flops"]["train_run"] / 3)
    # M - 1 jumps: ticket 0 continues from exploration, tickets 1 and 2 start with one
    assert [f["jumps"] for f in facts] == [[], [9], [9, 13]]
    for f, end in zip(facts, [8, 12, 16]):  # one epoch per ticket: its one epoch end is the candidate
        assert f["validation_history"] == [[end, f["validation_accuracy"]]] and f["member_step"] == end


def test_edst_members_evaluate_with_ood_scores(edst_store):
    root, members = edst_store
    cfg = compose_cfg("evaluate", [f"paths.root_dir={root}", "task=digits", "model=wrn10_1",
                                   "ensemble.max_size=3", "ensemble.groups=[[0]]"])
    summary = pd.read_csv(evaluate(cfg) / "summary.csv")
    rows = summary[summary.method == "freetickets_edst"]
    assert sorted(rows.k.unique()) == [1, 2, 3]
    in_logits = [store.read_predictions(p / "predictions.npz")[0] for p in members]
    out_logits = [store.read_predictions(p / "ood_photos.npz")[0] for p in members]
    scores = ensemble_ood_auroc(in_logits, out_logits)
    assert set(scores) == {"auroc_msp", "auroc_entropy"} and all(0 <= v <= 100 for v in scores.values())


def test_ood_auroc_on_hand_examples():
    sure = np.array([[0.9, 0.1], [0.8, 0.2]])
    unsure = np.array([[0.5, 0.5], [0.6, 0.4]])
    assert ood_auroc(sure, unsure) == {"auroc_msp": 100.0, "auroc_entropy": 100.0}
    assert ood_auroc(unsure, sure) == {"auroc_msp": 0.0, "auroc_entropy": 0.0}


def test_glue_dst_sparse_finetune_from_pretrained(make_cfg):
    cfg = make_cfg("method=freetickets", "method.update_frequency=2", "seed=0")
    [path] = train(cfg)
    assert path.parent.name == "freetickets_dst" and path.parent.parent.name == "minilm_l6_L1"
    mask = load_mask(path / "mask.npz")
    assert len(mask) == 7 and all(any(re.search(p, n) for p in DEFAULT_PRUNABLE_PATTERNS) for n in mask)
    facts = _facts(path)
    assert facts["density"] == pytest.approx(0.7, abs=1e-3)  # text_density: Paper A's 30% pruning
    assert facts["topology_updates"] == 1 and facts["flops"]["inference_rel_dense"] < 1
    logits, _ = store.read_predictions(path / "predictions.npz")
    assert logits.shape == (64, 2)


def test_glue_rejects_a_validation_split(make_cfg):
    with pytest.raises(UserError, match="validation_fraction=0.1 is supported for image tasks only"):
        train(make_cfg("method=freetickets", "data.validation_fraction=0.1", "seed=0"))


def test_glue_edst_two_tickets(make_cfg):
    cfg = make_cfg("method=freetickets", "method.variant=edst", "method.num_tickets=2",
                   "method.exploration_epochs=1", "method.refinement_epochs=0.5", "method.growth=random", "seed=0")
    members = train(cfg)
    assert [p.name for p in members] == ["seed_0_ticket_0", "seed_0_ticket_1"]
    a, b = (load_mask(p / "mask.npz") for p in members)
    assert mask_iou(a, b) < 1.0
    assert _facts(members[1])["dense_grad_steps"] == 0  # SET growth needs no dense gradient


def test_phase_accounting_helpers():
    assert examples_in_steps(100, 32, 4) == 100 and examples_in_steps(100, 32, 6) == 164
    phases = [Phase(1, steps=10, writes=False), Phase(1, steps=5, jump=True), Phase(1, steps=5, jump=True)]
    # frequency 5: scheduled at 5 (phase 1); 15 is the end of phase 2 (skipped); jumps at 11 and 16
    assert dense_grad_steps(phases, 5) == [1, 1, 1]
    assert dense_grad_steps(phases, 0) == [0, 1, 1]
    assert dense_grad_steps([Phase(1, steps=7, jump=True)], 1) == [6]  # the jump is step 1's update
    cfg = digits_cfg("/tmp", "method.variant=edst", "method.jump_before_first_ticket=true")
    ctx = SimpleNamespace(cfg=cfg, data=SimpleNamespace(train=range(115)))
    method = FreeTickets(cfg)
    assert [p.jump for p in method.phases(ctx)] == [False, True, True, True]  # METHODS.md: M jumps
    cfg.method.jump_before_first_ticket = False
    assert [p.jump for p in method.phases(ctx)] == [False, False, True, True]  # the reference: M - 1


def test_bad_settings_fail_clearly(tmp_path):
    with pytest.raises(UserError, match="density"):
        train(digits_cfg(tmp_path, "method.density=1.5"))
    with pytest.raises(UserError, match="sparse patterns"):
        train(digits_cfg(tmp_path, "method.sparse_patterns=[nothing]"))
    ctx = SimpleNamespace(cfg=digits_cfg(tmp_path))
    with pytest.raises(UserError, match="trainer field names"):
        with trainer_overrides(ctx, {"lrr": 1}):
            pass
    with trainer_overrides(ctx, {"lr": 0.01}):
        assert ctx.cfg.trainer.lr == 0.01
    assert ctx.cfg.trainer.lr == 0.1  # restored after the phase
    with pytest.raises(Exception, match="variant"):
        digits_cfg(tmp_path, "method.variant=dense")


def test_ensemble_costs_relative_to_one_dense_model(edst_store, tmp_path):
    root, members = edst_store
    run = _facts(members[0])["flops"]["train_run_rel_dense"]
    cost = ensemble_cost(members)
    assert cost["train_rel_dense"] == pytest.approx(run)  # three tickets cost their one run
    assert cost["inference_rel_dense"] == pytest.approx(3 * member_cost(members[0])["inference_rel_dense"])
    dense = tmp_path / "seed_0"
    dense.mkdir()
    (dense / "run.json").write_text(json.dumps({"seed": 0}))
    assert member_cost(dense) == {"train_rel_dense": 1.0, "inference_rel_dense": 1.0}


def _record_phase_batches(monkeypatch):
    """The training batches (pixel sums) of every ctx.finetune call, one list per phase."""
    phases, original = [], RunContext.finetune

    def finetune(self, model, **kw):
        seen = []
        handle = model.register_forward_pre_hook(
            lambda m, args, kwargs: seen.append(round(float(kwargs["pixel_values"].sum()), 3)) if m.training else None,
            with_kwargs=True)
        try:
            return original(self, model, **kw)
        finally:
            handle.remove()
            phases.append(seen)

    monkeypatch.setattr(RunContext, "finetune", finetune)
    return phases


def test_edst_phases_continue_the_data_stream(tmp_path, monkeypatch):
    phases = _record_phase_batches(monkeypatch)
    overrides = ["method.variant=edst", "method.num_tickets=2", "method.member_checkpoint=last", "seed=0"]
    train(digits_cfg(tmp_path / "a", *overrides))
    first = list(phases)
    assert len(first) == 3 and all(len(p) == 4 for p in first)
    assert first[1] != first[2] and first[0] != first[1]  # no phase replays another's batches
    phases.clear()
    train(digits_cfg(tmp_path / "b", *overrides))
    assert phases == first  # still deterministic per seed


def test_best_val_member_is_the_stored_step(tmp_path, monkeypatch):
    """Scripted validation accuracies 0.5, 0.9, 0.7: the member is the model at step 8 (of 12)."""
    scores, seen = iter([0.5, 0.9, 0.7]), {}
    original = MemberChoice.epoch_end

    def epoch_end(self, epoch=None):
        step = self.engine.steps
        with torch.random.fork_rng(devices=[]):  # the test's own look must not move the data stream
            seen[step] = (self.ctx.predict_all(self.model)["test"], self.engine.masks_numpy())
        original(self, epoch)

    score = MemberChoice._validation_accuracy
    monkeypatch.setattr(MemberChoice, "_validation_accuracy", lambda self: score(self) * 0 + next(scores))
    monkeypatch.setattr(MemberChoice, "epoch_end", epoch_end)
    [path] = train(digits_cfg(tmp_path, "trainer.epochs=3", "seed=2"))
    facts = _facts(path)
    assert facts["member_checkpoint"] == "best_val" and facts["optimizer_steps"] == 12
    assert facts["member_step"] == 8 and facts["validation_accuracy"] == 0.9
    assert facts["validation_history"] == [[4, 0.5], [8, 0.9], [12, 0.7]]
    assert facts["topology_updates"] == 4  # steps 2, 4, 6, 8 (not 10: after the stored model)
    logits, _ = store.read_predictions(path / "predictions.npz")
    np.testing.assert_array_equal(logits, seen[8][0])
    assert not np.array_equal(logits, seen[12][0])
    mask = load_mask(path / "mask.npz")
    assert all(np.array_equal(mask[n], seen[8][1][n]) for n in mask)
    assert not all(np.array_equal(mask[n], seen[12][1][n]) for n in mask)
    # scoring the candidates does not change training: a `last` run ends with the same model
    monkeypatch.undo()
    [last] = train(digits_cfg(tmp_path / "last", "trainer.epochs=3", "seed=2", "method.member_checkpoint=last"))
    np.testing.assert_array_equal(store.read_predictions(last / "predictions.npz")[0], seen[12][0])
    with pytest.raises(UserError, match="validation_fraction"):
        train(digits_cfg(tmp_path / "none", "data.validation_fraction=0"))


def test_a_run_without_topology_updates_warns_first_and_says_so_in_run_json(tmp_path, caplog):
    """update_frequency above the run's steps (4 here): one fixed mask. Also: auto on a CPU says so first."""
    import logging

    with caplog.at_level(logging.INFO):
        [path] = train(digits_cfg(tmp_path, "trainer.epochs=1", "method.update_frequency=100",
                                  "method.member_checkpoint=last", "seed=3"))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("device: cpu: trainer.device=auto and torch sees no CUDA GPU")
    warning = next(m for m in messages if "update_frequency" in m)
    assert messages.index(warning) < 6 and "method.update_frequency=100 but this run makes 4 optimizer steps" in warning
    facts = _facts(path)
    assert facts["scheduled_topology_updates"] == facts["topology_updates"] == 0
    assert facts["warnings"] == [warning.removeprefix("seed 3: ")]
    [other] = train(digits_cfg(tmp_path, "trainer.epochs=1", "method.member_checkpoint=last", "seed=4"))
    assert _facts(other)["scheduled_topology_updates"] == 1 and "warnings" not in _facts(other)  # step 2 of 4


def test_paper_experiments_reset_erk_dense_layers_as_the_reference(tmp_path):
    """CIFAR: the reference's reset; digits: skip, which made results/freetickets_digits/ (5 ERK-dense layers)."""
    for name, expected in [("freetickets_cifar10", "reset"), ("freetickets_cifar100", "reset"),
                           ("freetickets_digits", "skip")]:
        assert compose_cfg("train", [f"experiment={name}"]).method.dense_layers.value == expected
    assert compose_cfg("train", ["method=freetickets"]).method.dense_layers.value == "skip"
