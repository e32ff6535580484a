"""W&B during training, read back from the offline run files: one run per member, sweep-ready keys,
and an unreachable server that costs nothing (the runs are written offline instead)."""
from __future__ import annotations

import json
import logging
import socket

import numpy as np
import pytest

from ticket_ensembles import loggers, store
from ticket_ensembles.run import train
from wandb_records import read_runs

TRAIN_KEYS = {"train/loss", "train/learning_rate", "train/epoch", "train/grad_norm", "train/samples_per_second"}


def closed_local_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def unreachable_server(monkeypatch):
    """An online W&B setup whose server is a closed local port: the offline compute node."""
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_local_port()}")
    monkeypatch.setattr(loggers, "_unreachable", set())


def test_active_lt_chain_is_one_run_per_member_and_survives_an_unreachable_server(
        make_cfg, tmp_path, unreachable_server, caplog):
    cfg = make_cfg("method=active_lt", "seed=1", "method.group_size=2", "method.prune_ratio=0.1",
                   "method.prune_step=0.1", "trainer.log_every_steps=1", "logger=wandb", "logger.mode=online",
                   "logger.init_timeout=2", "logger.eval_every_steps=2")
    with caplog.at_level(logging.INFO, logger="ticket_ensembles"):
        members = train(cfg)
    folder = tmp_path / "store" / "mrpc" / "minilm_l6_L1" / "active_lt"
    assert all(store.is_complete(folder / f"seed_{s}") for s in (0, 1)), members  # nothing lost
    sync = [r for r in caplog.records if "wandb sync" in r.getMessage()]
    assert len(sync) == 1 and sync[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]

    runs = {r.name: r for r in read_runs(tmp_path / "logs")}
    assert sorted(runs) == ["active_lt/seed_0", "active_lt/seed_1"]  # the predecessor has its own run
    for seed, run in enumerate(runs[f"active_lt/seed_{s}"] for s in (0, 1)):
        assert run.group == "default/mrpc/minilm_l6_L1" and run.job_type == "train" and run.exit_code == 0
        assert run.config["member"] == {"method": "active_lt", "seed": seed, "ticket": None, "phase": "train",
                                        "built_by": 1 if seed == 0 else None}
        assert run.config["seed"] == seed and "active_lt" in run.tags and f"seed_{seed}" in run.tags
        assert run.metrics["train/*"] == run.metrics["eval/*"] == loggers.STEP
        _check_history(run)
        metrics = json.loads((folder / f"seed_{seed}" / "metrics.json").read_text())
        assert run.summary["eval/accuracy"] == metrics["accuracy"] and run.summary[loggers.STEP] == 8
        assert run.summary["optimizer_steps"] == 8  # the member's run facts, its own (not its successor's)
    assert "predecessor" in runs["active_lt/seed_0"].tags and "predecessor" not in runs["active_lt/seed_1"].tags


def _check_history(run) -> None:
    """One pruning round then the final finetune (4 steps each) on one train/global_step axis."""
    train_rows = [h for h in run.history if "train/loss" in h]
    assert TRAIN_KEYS <= set(train_rows[0])
    assert [h[loggers.STEP] for h in train_rows] == list(range(1, 9))
    assert [h["train/phase"] for h in train_rows] == ["round 1"] * 4 + ["final"] * 4
    assert [h.get("train/round") for h in train_rows] == [1] * 4 + [None] * 4
    eval_rows = [h for h in run.history if "eval/accuracy" in h]
    assert [h[loggers.STEP] for h in eval_rows] == [2, 4, 6, 8]  # eval_every_steps=2 and each finetune's end
    assert {"eval/f1", "eval/loss"} <= set(eval_rows[0]) and eval_rows[0]["eval/loss"] > 0
    assert not any(k.startswith("seed") or k.startswith("dev/") for h in run.history for k in h)


def test_edst_tickets_are_one_run_each_on_one_step_axis_and_train_as_without_wandb(make_cfg, tmp_path):
    edst = ["method=freetickets", "method.variant=edst", "method.num_tickets=2", "method.exploration_epochs=0.5",
            "method.refinement_epochs=0.5", "trainer.log_every_steps=1"]
    train(make_cfg(*edst, "logger=wandb", "logger.mode=offline", "logger.eval_every_steps=1"))
    train(make_cfg(*edst, root=tmp_path / "off"))
    for ticket in (0, 1):  # dev passes between steps leave the training (dropout noise included) as it was
        on, off = (root / "store" / "mrpc" / "minilm_l6_L1" / "freetickets_edst" / f"seed_0_ticket_{ticket}"
                   for root in (tmp_path, tmp_path / "off"))
        assert np.array_equal(store.read_predictions(on / "predictions.npz")[0],
                              store.read_predictions(off / "predictions.npz")[0])
    runs = {r.name: r for r in read_runs(tmp_path / "logs")}
    assert sorted(runs) == ["freetickets_edst/seed_0_ticket_0", "freetickets_edst/seed_0_ticket_1"]
    for ticket, steps in [(0, [1, 2, 3, 4]), (1, [5, 6])]:  # ticket 0: exploration + its refinement
        run = runs[f"freetickets_edst/seed_0_ticket_{ticket}"]
        assert run.config["member"]["ticket"] == ticket and f"ticket_{ticket}" in run.tags
        assert [h[loggers.STEP] for h in run.history if "train/loss" in h] == steps
        assert [h[loggers.STEP] for h in run.history if "eval/accuracy" in h] == steps
        assert run.summary[loggers.STEP] == steps[-1] and "eval/accuracy" in run.summary
