"""evaluate.py and the members' recorded facts: one method's members must share their settings, the
hardware each ran on is listed and a mix warned about, and a missing model folder names its siblings."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, compose_cfg
from evaluation_stores import noisy_logits, write_member
from ticket_ensembles.evaluation import EvaluationError, evaluate
from ticket_ensembles.fingerprint import digest, member_settings

CPU = {"device": "cpu", "device_name": "AMD EPYC", "precision": "fp32", "tf32": False}


def settings_of(*overrides: str) -> dict:
    """The settings a real random_lt run of the tiny setting records."""
    return member_settings(compose_cfg("train", [*TINY, "method=random_lt", *overrides]))


def facts(settings: dict | None, **hardware) -> dict:
    run = {**CPU, **hardware}
    return run if settings is None else run | {"settings": settings, "fingerprint": digest(settings)}


def build(root: Path, method: str, runs: dict[int, dict | None], n: int = 60) -> None:
    """Members of one method; ``runs`` maps a seed to its run.json (None: a member without one)."""
    rng = np.random.default_rng(len(runs))
    labels = np.arange(n) % 2
    for seed, run in runs.items():
        write_member(root / "store", method, seed, noisy_logits(rng, labels, 1.0), labels, run=run)


def cfg(root: Path, *overrides: str):
    return compose_cfg("evaluate", [f"paths.root_dir={root}", "model.name=tiny", "ensemble.max_size=2",
                                    "ensemble.groups=[[0,1,2,3]]", *overrides])


def test_a_method_whose_members_differ_in_settings_is_refused_naming_keys_members_and_the_way_out(tmp_path, caplog):
    same = settings_of()
    build(tmp_path, "random_lt", {0: facts(same), 1: facts(same), 2: facts(same),
                                  3: facts(settings_of("trainer.lr=1e-3", "trainer.epochs=2"))})
    with pytest.raises(EvaluationError) as e:
        evaluate(cfg(tmp_path))
    message = str(e.value)
    assert message.startswith("random_lt: seed_3 differs from seed_0 in trainer.epochs (seed_0: 1.0, seed_3: 2.0), "
                              "trainer.lr (seed_0: 2e-05, seed_3: 0.001): ")
    assert "overwrite=true" in message and "ensemble.allow_mixed_settings=true" in message and "\n" not in message
    assert not (tmp_path / "reports").exists()
    with caplog.at_level(logging.WARNING):
        out = evaluate(cfg(tmp_path, "ensemble.allow_mixed_settings=true"))
    assert (out / "table1.md").is_file()
    assert any("seed_3 differs from seed_0 in trainer.epochs" in r.message and "ensembled anyway" in r.message
               for r in caplog.records)


def test_a_key_absent_at_its_schema_default_is_no_difference_and_one_off_it_is(tmp_path):
    ours = settings_of()
    older = {k: v for k, v in ours.items() if k not in ("trainer.lr_gamma", "method.l1_mode")}  # defaults: 0.1, loss
    assert ours["trainer.lr_gamma"] == 0.1 and ours["method.l1_mode"] == "loss"
    build(tmp_path, "random_lt", {0: facts(ours), 1: facts(older), 2: facts(ours), 3: facts(ours)})
    evaluate(cfg(tmp_path))  # nothing differs
    no_epochs = {k: v for k, v in ours.items() if k != "trainer.epochs"}  # 1.0 here, the schema's 3.0 there
    build(tmp_path / "b", "random_lt", {0: facts(ours), 1: facts(ours), 2: facts(no_epochs), 3: facts(ours)})
    with pytest.raises(EvaluationError, match=r"seed_2 differs from seed_0 in trainer.epochs \(seed_0: 1.0, seed_2: "
                                              r"unset\)"):
        evaluate(cfg(tmp_path / "b"))


def test_members_written_before_settings_are_read_with_one_warning_and_never_rewritten(tmp_path, caplog):
    build(tmp_path, "baseline", {0: None, 1: facts(None), 2: facts(settings_of("method=baseline")), 3: None})
    build(tmp_path, "random_lt", {0: None, 1: None})
    before = {p: p.read_bytes() for p in sorted((tmp_path / "store").rglob("*")) if p.is_file()}
    with caplog.at_level(logging.WARNING):
        evaluate(cfg(tmp_path))
    warned = [r.message for r in caplog.records if "before members recorded their settings" in r.message]
    assert len(warned) == 1 and warned[0].startswith("5 member(s)") and "random_lt/seed_1" in warned[0]
    assert "baseline/seed_2" not in warned[0]
    assert {p: p.read_bytes() for p in sorted((tmp_path / "store").rglob("*")) if p.is_file()} == before


def test_members_csv_lists_each_members_hardware_and_a_mix_warns_once_per_method(tmp_path, caplog):
    gpu = {"device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3", "precision": "bf16"}
    build(tmp_path, "baseline", {0: facts(None), 1: facts(None), 2: facts(None, **gpu), 3: None,
                                 7: facts(None, tf32=True)})  # seed 7 is in no group: no ensemble holds it
    build(tmp_path, "random_lt", {s: facts(None) for s in range(4)})
    with caplog.at_level(logging.WARNING):
        out = evaluate(cfg(tmp_path))
    members = pd.read_csv(out / "members.csv", keep_default_na=False).set_index(["method", "member"])
    assert members.loc[("baseline", "seed_2"), ["device", "device_name", "precision", "tf32"]].tolist() == [
        "cuda:0", "NVIDIA H100 80GB HBM3", "bf16", "False"]
    assert members.loc[("baseline", "seed_3"), ["device_name", "precision", "tf32"]].tolist() == ["", "", ""]
    assert members.loc[("random_lt", "seed_0"), "device_name"] == "AMD EPYC"
    mixed = [r.message for r in caplog.records if "its ensembles mix" in r.message]
    assert mixed == ["baseline: its ensembles mix device_name AMD EPYC (seed_0 seed_1) vs NVIDIA H100 80GB HBM3 "
                     "(seed_2); precision fp32 (seed_0 seed_1) vs bf16 (seed_2): their scores may differ by hardware "
                     "as well as by seed; train one method's members on one kind for a clean comparison"]


def test_no_members_under_the_model_folder_names_the_folders_beside_it_and_their_override(tmp_path):
    labels = np.arange(20) % 2
    for model in ("minilm_l6_L1", "bert_base_uncased"):
        write_member(tmp_path / "store", "baseline", 0, noisy_logits(np.random.default_rng(0), labels, 1.0), labels,
                     model=model)
    base = [f"paths.root_dir={tmp_path}", "ensemble.max_size=1", "ensemble.groups=[[0]]"]
    with pytest.raises(EvaluationError) as e:
        evaluate(compose_cfg("evaluate", [*base, "model=minilm_l6"]))
    assert (f"no complete members under {tmp_path}/store/mrpc/minilm_l6, but {tmp_path}/store/mrpc holds members of "
            "bert_base_uncased (model=bert_base_uncased), minilm_l6_L1 (model.num_layers=1)") in str(e.value)
    assert evaluate(compose_cfg("evaluate", [*base, "model=minilm_l6", "model.num_layers=1"])).name == "minilm_l6_L1"
    (tmp_path / "store" / "mrpc" / "minilm_l6_L1").rename(tmp_path / "store" / "mrpc" / "minilm_l6")
    with pytest.raises(EvaluationError, match=r"minilm_l6 \(model.num_layers=null\)"):
        evaluate(compose_cfg("evaluate", [*base, "model=minilm_l6", "model.num_layers=2"]))
    assert evaluate(compose_cfg("evaluate", [*base, "model=minilm_l6", "model.num_layers=null"])).name == "minilm_l6"
