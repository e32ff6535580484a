"""Config composition: every method x task composes; typos and wrong types fail early."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from conftest import CONF, compose_cfg, run_script
from ticket_ensembles.tasks import TASKS

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
TASK_FILES = sorted(p.stem for p in (CONF / "task").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


def test_every_glue_task_has_a_config():
    for name in ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli"]:
        assert name in TASK_FILES and name in TASKS


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("task", TASK_FILES)
def test_every_method_and_task_composes(method, task):
    cfg = compose_cfg("train", [f"method={method}", f"task={task}"])
    assert cfg.task.name == task
    assert cfg.method.name
    assert cfg.task.name in TASKS


@pytest.mark.parametrize("model", MODELS)
def test_every_model_composes(model):
    cfg = compose_cfg("train", [f"model={model}"])
    assert cfg.model.name and cfg.model.pretrained


def test_paper_trainer_defaults():
    t = compose_cfg("train", []).trainer
    assert (t.epochs, t.lr, t.batch_size, t.max_length, t.warmup_ratio) == (3.0, 2e-5, 32, 128, 0.0)
    assert compose_cfg("train", []).model.dropout == 0.1


@pytest.mark.parametrize("override", ["trainer.lrr=1e-5", "model.dropuot=0.2", "seeed=3"])
def test_typo_fails_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        compose_cfg("train", [override])


@pytest.mark.parametrize("override", ["trainer.epochs=three", "seed=abc", "trainer.precision=fp8"])
def test_wrong_type_fails_at_composition(override):
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_cfg("train", [override])


def test_cfg_job_prints_the_composed_config():
    res = run_script("train.py", "--cfg", "job", "task=stsb", "method=bagging")
    assert res.returncode == 0, res.stderr
    assert "name: stsb" in res.stdout and "subset_ratio: 0.9" in res.stdout


@pytest.mark.parametrize("group,bad", [("task", "mrcp"), ("method", "lottery"), ("model", "bert")])
def test_unknown_choice_lists_the_options(group, bad):
    res = run_script("train.py", f"{group}={bad}")
    assert res.returncode != 0
    assert "Could not find" in res.stderr and "Available options" in res.stderr
