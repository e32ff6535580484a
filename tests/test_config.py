"""Config composition: every method x task composes; typos and wrong types fail early."""
from __future__ import annotations


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


# Hydra adds a `+key=value` even to a struct config; the entry points refuse keys no schema knows.
@pytest.mark.parametrize("config,overrides,unknown", [
    ("train", ["+trainer.lrr=1e-5"], ["trainer.lrr"]),
    ("train", ["++trainer.lrr=1e-5"], ["trainer.lrr"]),
    ("train", ["method=random_lt", "+method.prune_ratoi=0.2", "+seeds=3"], ["method.prune_ratoi", "seeds"]),
    ("evaluate", ["+trainer.lr=1e-3", "+ensemble.maxsize=2"], ["ensemble.maxsize", "trainer.lr"]),
])
def test_appended_keys_no_schema_defines_are_found(config, overrides, unknown):
    from ticket_ensembles.known_keys import unknown_keys

    assert sorted(unknown_keys(compose_cfg(config, overrides))) == unknown


def test_plus_still_adds_to_free_form_settings_and_every_shipped_experiment_is_known():
    from ticket_ensembles.known_keys import unknown_keys

    cfg = compose_cfg("train", ["method=freetickets", "+method.refinement_trainer.lr=0.01"])
    assert cfg.method.refinement_trainer.lr == 0.01 and unknown_keys(cfg) == []
    for experiment in sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")):
        assert unknown_keys(compose_cfg("train", [f"experiment={experiment}"])) == [], experiment


@pytest.mark.parametrize("script,args,says", [
    ("train.py", ["+trainer.lrr=1e-5"], "unknown setting trainer.lrr (did you mean trainer.lr?)"),
    ("train.py", ["+trainer.lr=1e-3"], "An item is already at 'trainer.lr'"),  # Hydra's own refusal
    ("train.py", ["-m", "seed=0,1", "+trainer.lrr=1e-5"], "unknown setting trainer.lrr"),  # before any job
    ("train.py", ["-m", "+trainer.lrr=1e-5,2e-5"], "unknown setting trainer.lrr"),  # swept: in the first job
    ("evaluate.py", ["+ensemble.maxsize=2"], "unknown setting ensemble.maxsize (did you mean ensemble.max_size?)"),
])
def test_an_appended_unknown_key_fails_in_one_line_before_anything_runs(script, args, says, tmp_path):
    res = run_script(script, *args, f"paths.root_dir={tmp_path}", "model.num_layers=1")
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], res.stderr
    assert not (tmp_path / "store").exists() and not (tmp_path / "reports").exists()
    if "seed=0,1" in args:
        assert not (tmp_path / "logs").exists()  # the sweep stopped before it launched a job
