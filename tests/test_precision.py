"""fp16 with loss scaling, TF32, auto precision and the data loader's GPU options, tested on the CPU.

The fp16 tests force an overflow on the first step (a GradScaler whose initial scale overflows
fp32, backing off to 2^12 after it) and check that the skipped step changes nothing anywhere: no
weight, no mask, no L1 shrink, no topology update; and that clipping saw unscaled gradients.
"""
from __future__ import annotations

import functools
import json
import logging
import os

import numpy as np
import pytest
import torch

from conftest import compose_cfg
from ticket_ensembles import store, trainer
from ticket_ensembles.masking import MaskedTraining
from ticket_ensembles.run import train
from ticket_ensembles.sparse import SparseEngine, UpdateRule
from ticket_ensembles.tasks import get_task
from ticket_ensembles.vision import load_image_model, load_image_task

# WRN-10-1 on 128 digits (115 train after the 10 % validation), 4 steps of 32, clipping on
DIGITS = ["experiment=freetickets_digits", "model=wrn10_1", "data.max_train_samples=128", "data.max_eval_samples=64",
          "trainer.batch_size=32", "trainer.epochs=1", "trainer.progress=false", "trainer.precision=fp16",
          "trainer.max_grad_norm=1.0", "trainer.device=cpu"]

# fused AdamW, as GLUE runs: GradScaler lets a fused optimizer skip inside its kernel, after which a
# wrapper's step would still re-mask, shrink and move the topology; the wrappers must opt out of that
ADAMW = ["trainer.optimizer=adamw", "trainer.lr=1e-3", "trainer.lr_schedule=linear"]


@pytest.fixture
def overflow_first_step(monkeypatch):
    """GradScaler starting at 2^127 (every scaled gradient overflows), then backing off to 2^``after`` at once;
    returns the gradient norms clipping saw."""
    norms = []

    def force(after: int = 12) -> list[float]:
        monkeypatch.setattr(torch.amp, "GradScaler", functools.partial(
            torch.amp.GradScaler, init_scale=2.0**127, backoff_factor=2.0 ** (after - 127)))
        norms.clear()
        return norms

    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: norms.append(float(clip(*a, **k))) or norms[-1])
    monkeypatch.setattr(trainer, "_warned_emulated", {"fp16"})  # fp16 is emulated on this CPU: no warning here
    return force


class Probe:
    """Hooks around a method's hooks: the weights (and masks) after every step of the loop."""

    def __init__(self, inner, model, masks=None):
        self.inner, self.model, self.masks = inner, model, masks
        self.extra_loss = getattr(inner, "extra_loss", None)
        self.after = []

    def wrap_optimizer(self, optimizer):
        self.before = self._weights()
        return self.inner.wrap_optimizer(optimizer)

    def after_step(self, model, step):
        self.after.append(self._weights())

    def _weights(self):
        out = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        if self.masks is not None:
            out |= {f"mask:{n}": m.clone() for n, m in self.masks().items()}
        return out


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _digits(*overrides):
    cfg = compose_cfg("train", [*DIGITS, *overrides])
    task = get_task("digits")
    return cfg, load_image_task(task, cfg), load_image_model(cfg.model, task, 0)


def test_fp16_overflow_skips_the_sparse_engines_step(overflow_first_step):
    norms = overflow_first_step()
    cfg, data, model = _digits(*ADAMW)
    gen = torch.Generator().manual_seed(0)
    masks = {n: torch.rand(p.shape, generator=gen) < 0.5 for n, p in model.named_parameters() if n.endswith("weight")
             and p.ndim > 1}
    engine = SparseEngine(model, masks, UpdateRule(0.5, "constant", "rigl", update_frequency=1, total_steps=8))
    grads_used = []
    grow = engine._grow_indices
    engine._grow_indices = lambda name, mask, k: grads_used.append(bool(engine._dense_grads[name].isfinite().all())) \
        or grow(name, mask, k)
    probe = Probe(engine, model, lambda: engine.masks)
    try:
        result = trainer.finetune(model, data.train, cfg.trainer, 0, hooks=probe)
    finally:
        engine.close()
    assert result.steps == 4 and len(result.lr_trace) == 4  # the lr schedule follows the batches
    assert _same(probe.after[0], probe.before)  # the skipped step: no weight, no mask moved
    assert not _same(probe.after[1], probe.after[0])
    assert engine.steps == 3 and [h["step"] for h in engine.history] == [1, 2, 3]  # updates on taken steps only
    assert grads_used and all(grads_used)  # growth never ranked by the overflowed gradient
    assert not engine._dense_grads
    for name, mask in engine.masks.items():
        weight = dict(model.named_parameters())[name]
        assert torch.isfinite(weight).all() and not weight[~mask].any()
    assert not np.isfinite(norms[0]) and all(np.isfinite(norms[1:]))


@pytest.mark.parametrize("mode", ["decoupled", "loss"])
def test_fp16_overflow_skips_the_masked_step_and_its_l1(overflow_first_step, mode):
    runs = {}
    # decoupled: two loss scales after the overflow, and clipping must see the same, unscaled, norms
    for after in (10, 12) if mode == "decoupled" else (12,):
        norms = overflow_first_step(after)
        cfg, data, model = _digits(*ADAMW)
        params = {n: p for n, p in model.named_parameters() if n.startswith("blocks") and n.endswith("conv1.weight")}
        gen = torch.Generator().manual_seed(1)
        masks = {n: torch.rand(p.shape, generator=gen) < 0.7 for n, p in params.items()}
        coefficients = {n: torch.ones_like(p) for n, p in params.items()}
        with MaskedTraining(params, masks, coefficients, tau=1.0 if mode == "decoupled" else 1e-4, mode=mode) as hooks:
            probe = Probe(hooks, model)
            trainer.finetune(model, data.train, cfg.trainer, 0, hooks=probe)
        assert _same(probe.after[0], probe.before)  # no optimizer step, no shrink, no re-masking
        assert not _same(probe.after[1], probe.after[0])
        for weights in probe.after:
            assert all(torch.isfinite(w).all() for w in weights.values())
            assert not any(weights[n][~m].any() for n, m in masks.items())  # pruned weights stay exactly zero
        runs[after] = list(norms)
    assert not np.isfinite(runs[12][0]) and all(np.isfinite(runs[12][1:]))
    if mode == "decoupled":
        np.testing.assert_allclose(runs[10][1:], runs[12][1:], rtol=1e-3)  # scaled, they would differ 4x


def test_fp16_member_on_a_cpu(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(trainer, "native_fp16", lambda device_type: False)
    monkeypatch.setattr(trainer, "_warned_emulated", set())
    with caplog.at_level(logging.WARNING):
        [path] = train(compose_cfg("train", [*DIGITS, "method.update_frequency=2", f"paths.root_dir={tmp_path}"]))
    facts = json.loads((path / "run.json").read_text())
    assert facts["precision"] == "fp16" and facts["settings"]["trainer.precision"] == "fp16"
    assert np.isfinite(store.read_predictions(path / "predictions.npz")[0]).all()
    warned = [r.getMessage() for r in caplog.records if "fp16" in r.getMessage()]
    assert len(warned) == 1 and "emulated" in warned[0] and "trainer.precision=auto or fp32" in warned[0]


@pytest.mark.parametrize("device, bf16, expected", [("cuda", True, "bf16"), ("cuda", False, "fp16"),
                                                    ("cpu", True, "bf16"), ("cpu", False, "fp32")])
def test_auto_is_bf16_where_native_else_fp16_on_cuda_else_fp32(device, bf16, expected, monkeypatch):
    monkeypatch.setattr(trainer, "native_bf16", lambda device_type: bf16)
    assert trainer.resolve_precision(torch.device(device), "auto") == expected


def test_tf32_follows_the_setting_on_cuda_and_is_off_on_a_cpu(monkeypatch):
    cfg = compose_cfg("train", ["trainer.tf32=true", "trainer.device=cpu"]).trainer
    assert trainer.device_facts(cfg)["tf32"] is False  # a CPU has no TF32
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    monkeypatch.setattr(trainer, "resolve_device", lambda name: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "a GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: (8, 0))
    try:
        facts = trainer.device_facts(cfg)
        assert facts == {"device": "cuda:0", "device_name": "a GPU", "capability": "8.0", "tf32": True}
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high"
        cfg.tf32 = False
        assert trainer.device_facts(cfg)["tf32"] is False
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "highest"
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])


def test_paper_experiments_keep_fp32_without_tf32():
    for name in ("table1", "table2", "table3", "figure4", "sst2_footnote", "other_tasks", "table1_minilm", "mechanism",
                 "freetickets_cifar10", "freetickets_cifar100", "dense_cifar", "freetickets_digits",
                 "freetickets_digits_dense"):
        t = compose_cfg("train", [f"experiment={name}"]).trainer
        assert (t.precision.value, t.tf32, t.num_workers) == ("fp32", False, None), name


def test_loader_options_change_no_batch(monkeypatch):
    cfg, data, _ = _digits()
    cpu = trainer.loader_settings(data.train, cfg.trainer, torch.device("cpu"))
    assert cpu == {"pin_memory": False}  # every CPU default: today's loader exactly
    assert trainer.loader_settings(data.train, cfg.trainer, torch.device("cuda")) == {
        "pin_memory": True, "num_workers": min(4, max(1, len(os.sched_getaffinity(0)) // 2))}
    assert trainer.loader_settings(data.evals["test"], cfg.trainer, torch.device("cuda")) == {"pin_memory": True}

    def batches(**options):
        torch.manual_seed(0)
        loader = trainer.train_loader(data.train, cfg.trainer, 3, None, **options)
        return [(b["labels"].tolist(), b["pixel_values"]) for b in loader]

    plain, workers, again = batches(), batches(num_workers=2), batches(num_workers=2)
    assert [labels for labels, _ in workers] == [labels for labels, _ in plain]  # the seeded order holds
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(workers, again))  # and the crops follow the seed
    with pytest.raises(Exception, match="num_workers=-1 must be 0 or more"):
        cfg.trainer.num_workers = -1
        trainer.loader_settings(data.train, cfg.trainer, torch.device("cpu"))
