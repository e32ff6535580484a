"""Pruning building blocks on the real MiniLM-L6 cut to one layer, fed real MRPC rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ticket_ensembles import maskio, pruning
from ticket_ensembles.data import read_glue_tsv
from ticket_ensembles.masking import MaskedTraining
from ticket_ensembles.models import load_model, load_tokenizer
from ticket_ensembles.store import StoreError
from ticket_ensembles.tasks import get_task
from ticket_ensembles.trainer import build_optimizer

MRPC = get_task("mrpc")
LAYER0 = "bert.encoder.layer.0."
EXPECTED_PRUNABLE = [LAYER0 + s for s in (
    "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
    "attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight")] + ["bert.pooler.dense.weight"]


@pytest.fixture(scope="module")
def model_cfg(make_cfg_module):
    return make_cfg_module().model


@pytest.fixture(scope="module")
def make_cfg_module(glue_dir, tmp_path_factory):
    from conftest import TINY, compose_cfg

    root = tmp_path_factory.mktemp("pruning")
    return lambda *o: compose_cfg("train", [*TINY, f"data.glue_dir={glue_dir}", f"paths.root_dir={root}", *o])


@pytest.fixture
def model(model_cfg):
    return load_model(model_cfg, MRPC, seed=0)


@pytest.fixture(scope="module")
def batch(model_cfg, glue_dir):
    rows = read_glue_tsv(glue_dir / "MRPC" / "train.tsv", MRPC)
    enc = load_tokenizer(model_cfg)(rows["sentence1"][:8], rows["sentence2"][:8], truncation=True,
                                     max_length=64, padding=True, return_tensors="pt")
    return {**enc, "labels": torch.tensor(rows["label"][:8])}


def test_default_patterns_select_encoder_linears_and_pooler_only(model):
    assert list(pruning.select_prunable(model)) == EXPECTED_PRUNABLE


def test_config_default_patterns_are_the_library_defaults(make_cfg_module):
    assert tuple(make_cfg_module("method=base_lt").method.prunable_patterns) == pruning.DEFAULT_PRUNABLE_PATTERNS


def test_default_patterns_fit_roberta_naming_and_skip_its_dense_head():
    from transformers import RobertaConfig, RobertaForSequenceClassification

    cfg = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40)
    names = list(pruning.select_prunable(RobertaForSequenceClassification(cfg)))
    assert len(names) == 12  # 6 per layer; RoBERTa's classifier has no pooler
    assert all(n.startswith("roberta.encoder.layer.") for n in names)


@pytest.mark.parametrize("pattern", [r"embeddings", r"LayerNorm\.weight$", r"dense\.bias$", r"^classifier"])
def test_patterns_that_reach_never_pruned_tensors_are_refused(model, pattern):
    with pytest.raises(pruning.PruningError, match="never pruned"):
        pruning.select_prunable(model, [pattern])


def test_patterns_that_match_nothing_are_refused(model):
    with pytest.raises(pruning.PruningError, match="match no parameter"):
        pruning.select_prunable(model, [r"decoder\.weight$"])


def test_schedule_reaches_the_target_in_steps_of_the_original_count():
    assert pruning.pruning_schedule(0.3, 0.1) == pytest.approx([0.1, 0.2, 0.3])
    assert pruning.pruning_schedule(0.25, 0.1) == pytest.approx([0.1, 0.2, 0.25])
    with pytest.raises(pruning.PruningError):
        pruning.pruning_schedule(0.3, 0.4)


def test_global_pruning_removes_exactly_n_lowest_magnitudes(model):
    params = pruning.select_prunable(model)
    masks = pruning.full_masks(params)
    n = 12345
    new = pruning.prune_lowest_magnitude(params, masks, n)
    assert pruning.count_pruned(new) == n
    w = torch.cat([params[k].detach().abs().flatten() for k in params])
    keep = torch.cat([new[k].flatten() for k in params])
    assert w[~keep].max() <= w[keep].min()
    # ranked globally: the matrices lose different shares, not 12345/7 each
    shares = {k: float((~m).float().mean()) for k, m in new.items()}
    assert max(shares.values()) > 2 * min(shares.values())


def test_ties_give_an_exact_count_and_a_deterministic_choice():
    params = {"a": torch.ones(4, 5), "b": torch.ones(3, 3)}
    masks = pruning.full_masks(params)
    new = pruning.prune_lowest_magnitude(params, masks, 7)
    assert pruning.count_pruned(new) == 7
    assert (~new["a"]).flatten()[:7].all() and new["b"].all()  # earlier weights go first
    again = pruning.prune_lowest_magnitude(params, new, 15)  # survivors only; pruned are skipped
    assert pruning.count_pruned(again) == 22 and not again["a"].any()
    assert not again["b"].flatten()[:2].any() and again["b"].flatten()[2:].all()
    with pytest.raises(pruning.PruningError, match="only 22 survive"):
        pruning.prune_lowest_magnitude(params, new, 100)


def test_masked_adamw_steps_keep_pruned_weights_exactly_zero(model, model_cfg, make_cfg_module, batch):
    trainer_cfg = make_cfg_module("trainer.weight_decay=0.01", "trainer.lr=1e-3").trainer
    params = pruning.select_prunable(model)
    masks = pruning.prune_to_fraction(params, pruning.full_masks(params), 0.3)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = build_optimizer(model, trainer_cfg)
    with MaskedTraining(params, masks) as hooks:
        stepper = hooks.wrap_optimizer(optimizer)
        for _ in range(3):
            model(**batch).loss.backward()
            for k, m in masks.items():  # pruned gradients are zero before clipping sees them
                assert params[k].grad[~m].abs().max() == 0
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            stepper.step()
            optimizer.zero_grad(set_to_none=True)
    for k, m in masks.items():
        assert torch.count_nonzero(params[k][~m]) == 0
        assert not torch.equal(params[k][m], before[k][m])  # survivors do train
    assert not params[EXPECTED_PRUNABLE[0]]._post_accumulate_grad_hooks  # hooks removed on exit


def test_l1_penalty_is_tau_times_lr_scale_times_weighted_l1(model):
    params = pruning.select_prunable(model)
    coef = pruning.random_coefficients(params, 0.3, seed=1)
    with MaskedTraining(params, None, coef, tau=1e-3) as hooks:
        penalty = hooks.extra_loss(model, 0.5)
        expected = sum(float((params[k].detach().abs() * coef[k]).sum()) for k in params) * 1e-3 * 0.5
        assert float(penalty.detach()) == pytest.approx(expected, rel=1e-5)
        penalty.backward()
        k = EXPECTED_PRUNABLE[4]
        torch.testing.assert_close(params[k].grad, 0.5e-3 * torch.sign(params[k].detach()) * coef[k])
        assert hooks.extra_loss(model, 0.0) is None  # the lr schedule ended: so did the penalty
    with MaskedTraining(params, None, coef, tau=0.0) as hooks:
        assert hooks.extra_loss(model, 1.0) is None


def test_penalty_gradient_adds_to_the_loss_gradient_step_after_step(model, batch):
    model.eval()  # no dropout: every backward pass sees the same function
    params = pruning.select_prunable(model)
    coef = pruning.random_coefficients(params, 0.3, seed=2)
    model(**batch).loss.backward()
    plain = {k: p.grad.clone() for k, p in params.items()}
    model.zero_grad(set_to_none=True)
    with MaskedTraining(params, None, coef, tau=1e-3) as hooks:
        for _ in range(2):  # the penalty reuses its buffers: the second step must be right too
            (model(**batch).loss + hooks.extra_loss(model, 0.5)).backward()
            for k, p in params.items():
                torch.testing.assert_close(p.grad, plain[k] + 0.5e-3 * torch.sign(p.detach()) * coef[k])
            model.zero_grad(set_to_none=True)


def test_random_coefficients_follow_the_seed_with_p_zero_the_ratio(model):
    params = pruning.select_prunable(model)
    a, b = (pruning.random_coefficients(params, 0.3, seed=s) for s in (0, 1))
    zeros = sum(int((v == 0).sum()) for v in a.values()) / pruning.count_total(a)
    assert zeros == pytest.approx(0.3, abs=0.005)
    assert not pruning.masks_equal(a, b)
    assert pruning.masks_equal(a, pruning.random_coefficients(params, 0.3, seed=0))


def test_mean_of_masks_is_the_elementwise_mean(model):
    params = pruning.select_prunable(model)
    masks = [pruning.prune_to_fraction({k: torch.randn_like(p) for k, p in params.items()},
                                       pruning.full_masks(params), 0.3) for _ in range(3)]
    mean = pruning.mean_of_masks(masks, params)
    k = EXPECTED_PRUNABLE[2]
    torch.testing.assert_close(mean[k], (masks[0][k].float() + masks[1][k].float() + masks[2][k].float()) / 3)


def test_mask_file_round_trips_and_loads_onto_a_model(model, model_cfg, tmp_path):
    params = pruning.select_prunable(model)
    masks = pruning.prune_to_fraction(params, pruning.full_masks(params), 0.2)
    pruning.save_masks(tmp_path / "mask.npz", masks)
    n_bits = pruning.count_total(masks)
    assert (tmp_path / "mask.npz").stat().st_size < n_bits / 8 + 4096  # about one bit per weight
    fresh = load_model(model_cfg, MRPC, seed=0)
    loaded = pruning.apply_stored_mask(fresh, tmp_path / "mask.npz")
    assert pruning.masks_equal(loaded, masks)
    fresh_params = dict(fresh.named_parameters())
    assert all(torch.count_nonzero(fresh_params[k][~m]) == 0 for k, m in masks.items())
    maskio.save_mask(tmp_path / "bad.npz", {EXPECTED_PRUNABLE[0]: np.ones((3, 3), bool)})
    with pytest.raises(StoreError, match="different model"):
        pruning.apply_stored_mask(fresh, tmp_path / "bad.npz")


def test_rewind_restores_theta_s_exactly_head_included(model, batch):
    theta = pruning.snapshot(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(**batch).loss.backward()
    optimizer.step()
    assert not torch.equal(model.classifier.weight, theta["classifier.weight"])
    params = pruning.select_prunable(model)
    masks = pruning.prune_to_fraction(params, pruning.full_masks(params), 0.1)
    pruning.rewind(model, theta, masks)
    state = model.state_dict()
    for k, v in theta.items():
        expected = v * masks[k] if k in masks else v
        assert torch.equal(state[k], expected), k


def test_soft_threshold_arithmetic_on_hand_made_tensors():
    from ticket_ensembles.masking import soft_threshold_

    w = [torch.tensor([[1.0, -0.5, 0.0], [0.125, -0.0625, 0.75]]), torch.tensor([-2.0, 0.25])]
    coef = [torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.0, 1.0]]), torch.tensor([0.5, 1.0])]
    soft_threshold_(w, coef, 0.25)  # shrink by 0.25 * l; crossing zero stops at zero; l = 0 untouched
    assert torch.equal(w[0], torch.tensor([[0.75, -0.25, 0.0], [0.0, -0.0625, 0.5]]))
    assert torch.equal(w[1], torch.tensor([-1.875, 0.0]))
    gen = torch.Generator().manual_seed(0)
    w = [torch.randn(50, 40, generator=gen) * 0.05]
    coef = [(torch.rand(50, 40, generator=gen) > 0.3).float()]
    expected = w[0].sign() * (w[0].abs() - 0.03 * coef[0]).clamp_min(0)
    soft_threshold_(w, coef, 0.03)
    assert torch.equal(w[0], expected)  # bit for bit the formula w <- sign(w) max(|w| - lr tau l, 0)
    assert (w[0] == 0).sum() > 0 and torch.equal(w[0][coef[0] == 0], (expected)[coef[0] == 0])


def test_decoupled_step_shrinks_by_the_step_lr_and_keeps_pruned_weights_zero(model):
    params = pruning.select_prunable(model)
    masks = pruning.prune_to_fraction(params, pruning.full_masks(params), 0.3)
    coef = pruning.random_coefficients(params, 0.3, seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)  # zero gradients: only the shrink moves weights
    start = {k: p.detach().clone() for k, p in params.items()}
    with MaskedTraining(params, masks, coef, tau=2.0, mode="decoupled") as hooks:
        assert hooks.extra_loss(model, 1.0) is None  # nothing added to the loss in this mode
        stepper = hooks.wrap_optimizer(optimizer)
        for lr in (1e-3, 5e-4, 0.0):  # the lr of each step, as the schedule decays it
            optimizer.param_groups[0]["lr"] = lr
            before = {k: p.detach().clone() for k, p in params.items()}
            for p in model.parameters():
                p.grad = torch.zeros_like(p)
            stepper.step()
            for k, p in params.items():
                expected = before[k].sign() * (before[k].abs() - lr * 2.0 * coef[k]).clamp_min(0) * masks[k]
                assert torch.equal(p.detach(), expected), (lr, k)
                assert torch.count_nonzero(p[~masks[k]]) == 0
    k = EXPECTED_PRUNABLE[0]
    moved = (start[k] - params[k].detach()).abs()
    torch.testing.assert_close(moved[masks[k] & (coef[k] == 1)].max().item(), 3e-3)  # (1e-3 + 5e-4) * tau
    assert moved[masks[k] & (coef[k] == 0)].max() == 0


def test_weights_tied_at_zero_are_pruned_by_the_smaller_rewound_magnitude_first():
    params = {"a": torch.tensor([0.0, 0.3, 0.0, 0.0]), "b": torch.tensor([[0.0, 0.2]])}  # four ties at 0
    theta = {"a": torch.tensor([0.05, 0.3, -0.01, 0.04]), "b": torch.tensor([[-0.02, 0.2]])}
    masks = pruning.full_masks(params)
    by_theta = pruning.prune_lowest_magnitude(params, masks, 2, tiebreak=theta)
    assert by_theta["a"].tolist() == [True, True, False, True] and by_theta["b"].tolist() == [[False, True]]
    by_position = pruning.prune_lowest_magnitude(params, masks, 2)  # without: the earlier weights
    assert by_position["a"].tolist() == [False, True, False, True] and by_position["b"].all()
