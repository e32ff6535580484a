"""Smoke training on real MRPC rows with a real pretrained model (MiniLM cut to 1 layer)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import TINY, run_script
from ticket_ensembles import store
from ticket_ensembles.data import load_glue_dir, load_text_task
from ticket_ensembles.models import load_model, load_tokenizer
from ticket_ensembles.run import train
from ticket_ensembles.tasks import get_task
from ticket_ensembles.trainer import finetune


def _member(cfg, method="baseline", seed=0):
    return store.member_dir(cfg.paths.store_dir, cfg.task.name, "minilm_l6_L1", method, seed)


def test_baseline_writes_a_valid_member(make_cfg, glue_dir):
    cfg = make_cfg("method=baseline", "seed=0")
    [path] = train(cfg)
    assert path == _member(cfg) and store.is_complete(path)
    logits, labels = store.read_predictions(path / "predictions.npz")
    assert logits.shape == (64, 2) and logits.dtype == np.float32
    dev = load_glue_dir(get_task("mrpc"), glue_dir)["validation"]
    assert labels.tolist() == dev["label"][:64]  # dev-file order
    metrics = json.loads((path / "metrics.json").read_text())
    assert set(metrics) == {"accuracy", "f1"}
    assert metrics["accuracy"] == pytest.approx(100 * np.mean(logits.argmax(1) == labels), abs=1e-3)
    facts = json.loads((path / "run.json").read_text())
    assert facts["optimizer_steps"] == 4 and facts["seed"] == 0 and facts["wall_time_s"] > 0
    assert facts["nonzero_parameters"] <= facts["trainable_parameters"]
    assert "method:\n  name: baseline" in (path / "config.yaml").read_text()
    assert not [p for p in path.parent.iterdir() if ".partial" in p.name]


def test_same_seed_same_predictions_other_seed_differs(make_cfg, tmp_path):
    a = train(make_cfg("seed=3", root=tmp_path / "a"))[0]
    b = train(make_cfg("seed=3", root=tmp_path / "b"))[0]
    c = train(make_cfg("seed=4", root=tmp_path / "c"))[0]
    la, lb, lc = (store.read_predictions(p / "predictions.npz")[0] for p in (a, b, c))
    assert np.array_equal(la, lb)
    assert not np.allclose(la, lc)


def test_complete_member_is_skipped_unless_overwrite(make_cfg):
    [path] = train(make_cfg("seed=1"))
    stamp = (path / "predictions.npz").stat().st_mtime_ns
    train(make_cfg("seed=1"))
    assert (path / "predictions.npz").stat().st_mtime_ns == stamp
    train(make_cfg("seed=1", "overwrite=true"))
    assert (path / "predictions.npz").stat().st_mtime_ns != stamp and store.is_complete(path)


def test_failed_run_leaves_existing_member_intact_and_no_partial(make_cfg, monkeypatch):
    [path] = train(make_cfg("seed=2"))
    before = (path / "predictions.npz").read_bytes()

    def crash(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "write_json", crash)
    with pytest.raises(RuntimeError):
        train(make_cfg("seed=2", "overwrite=true"))
    assert (path / "predictions.npz").read_bytes() == before and store.is_complete(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [".locks", "seed_2"]  # no partial folder left


def test_bagging_trains_on_a_seeded_90_percent_subset(make_cfg):
    [path] = train(make_cfg("method=bagging", "seed=0"))
    facts = json.loads((path / "run.json").read_text())
    assert facts["bagging_subset_size"] == round(0.9 * 64)
    assert facts["optimizer_steps"] == 4  # ceil(58 / 16)
    assert path.parent.name == "bagging"


def test_regression_task_stores_one_score_per_example(make_cfg):
    [path] = train(make_cfg("task=stsb", "seed=0"))
    logits, labels = store.read_predictions(path / "predictions.npz")
    assert logits.shape == (64,) and labels.dtype.kind == "f"
    assert set(json.loads((path / "metrics.json").read_text())) == {"pearson", "spearmanr"}


def test_learning_rate_decays_to_exactly_zero(make_cfg):
    cfg = make_cfg("trainer.epochs=1.5")
    task = get_task("mrpc")
    data = load_text_task(task, cfg.data, load_tokenizer(cfg.model), 64)
    result = finetune(load_model(cfg.model, task, 0), data.train, cfg.trainer, 0, collate_fn=data.collate_fn)
    assert result.steps == 6 and result.final_lr == 0.0
    assert result.lr_trace[0] == pytest.approx(2e-5 * 5 / 6)
    assert all(a > b for a, b in zip(result.lr_trace, result.lr_trace[1:]))


def test_bf16_autocast_trains_and_predicts(make_cfg):
    [path] = train(make_cfg("trainer.precision=bf16", "seed=5"))
    logits, _ = store.read_predictions(path / "predictions.npz")
    assert logits.dtype == np.float32 and np.isfinite(logits).all()


@pytest.mark.slow
def test_multirun_sweep_names_folders_by_task_method_seed(glue_dir, tmp_path):
    res = run_script("train.py", "-m", *TINY, f"data.glue_dir={glue_dir}", f"paths.root_dir={tmp_path}",
                     "method=baseline", "seed=range(2)")
    assert res.returncode == 0, res.stderr[-2000:]
    members = store.list_members(tmp_path / "store", "mrpc", "minilm_l6_L1")
    assert sorted(members["baseline"]) == ["seed_0", "seed_1"]
    subdirs = sorted(p.relative_to(tmp_path / "logs" / "multiruns" / "default").parts[1:]
                     for p in (tmp_path / "logs" / "multiruns").glob("*/*/mrpc/*/*/seed_*"))
    assert subdirs == [("mrpc", "minilm_l6", "baseline", "seed_0"), ("mrpc", "minilm_l6", "baseline", "seed_1")]


def test_wandb_without_a_key_goes_offline_by_itself(glue_dir, tmp_path, monkeypatch):
    for k in [k for k in os.environ if k.startswith("WANDB")]:
        monkeypatch.delenv(k)
    env = dict(os.environ)
    env["HOME"] = str(tmp_path)  # no ~/.netrc, so no key anywhere
    res = run_script("train.py", *TINY, f"data.glue_dir={glue_dir}", f"paths.root_dir={tmp_path}",
                     "logger=wandb", "seed=0", env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    runs = list((tmp_path / "logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert f"W&B offline: run baseline/seed_0 (train) in {runs[0]}" in res.stdout  # one line: mode and folder
    assert store.is_complete(tmp_path / "store" / "mrpc" / "minilm_l6_L1" / "baseline" / "seed_0")
