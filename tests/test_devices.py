"""Device discipline without a GPU: every method builds its member with the model on another device.

The other device is tests/simulated_device.py: a device type of its own whose tensors refuse to mix
with CPU tensors, as CUDA's do, and a model move that keeps the Parameter objects, as a CUDA move
does. The builds run in a fresh interpreter: registering the device is for the life of a process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY, compose_cfg
from ticket_ensembles import store

SMALL = [*TINY, "data.max_train_samples=16", "data.max_eval_samples=16", "trainer.max_length=32"]
DIGITS = ["experiment=freetickets_digits", "model=wrn10_1", "data.max_train_samples=128", "data.max_eval_samples=64",
          "trainer.batch_size=32", "trainer.epochs=1", "trainer.progress=false", "method.update_frequency=2",
          "method.exploration_epochs=1", "method.refinement_epochs=1"]
# one member build per method (active_lt seed 1 builds its chain's seed 0 first); lottery: one round
CASES = {
    "baseline": [*SMALL, "method=baseline"],
    "bagging": [*SMALL, "method=bagging"],
    "base_lt": [*SMALL, "method=base_lt", "method.prune_step=0.3"],
    "active_lt": [*SMALL, "method=active_lt", "method.prune_step=0.3", "method.group_size=2", "seed=1"],
    "random_lt": [*SMALL, "method=random_lt", "method.prune_step=0.3", "method.l1_mode=decoupled"],
    "freetickets_glue": [*SMALL, "method=freetickets", "method.update_frequency=1", "trainer.batch_size=8"],
    "freetickets_digits_edst": [*DIGITS, "method.variant=edst", "method.num_tickets=2", "method.dense_layers=reset"],
}


def in_fresh_process(fn_name: str, *args: str):
    """``fn_name(*args)`` of this module in a fresh interpreter; its JSON return value, or its traceback
    as a failure here. Not a fork: a forked pytest(-xdist) worker whose autograd engine has already
    run holds device queues sized before the simulated device existed."""
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_devices; "
            f"print('RESULT ' + json.dumps(test_devices.{fn_name}(*sys.argv[1:])))")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    if res.returncode != 0:
        pytest.fail(f"in the child process (exit {res.returncode}):\n{res.stderr[-4000:]}")
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def _build_every_method(root: str, glue_dir: str) -> dict:
    from simulated_device import HOST_READS, simulated_device
    from ticket_ensembles.run import train

    out = {}
    with simulated_device() as device:
        for name, overrides in CASES.items():
            cfg = compose_cfg("train", [*overrides, f"data.glue_dir={glue_dir}", f"paths.root_dir={root}/{name}",
                                        f"trainer.device={device.type}"])
            out[name] = [str(p) for p in train(cfg)]
        out["host_reads"] = _host_reads_per_finetune(device, HOST_READS)
    return out


def _host_reads_per_finetune(device, reads: list[str]) -> dict[int, list[str]]:
    """The device-to-host reads of a dense WRN finetune of 2 and of 4 steps (no hooks, no W&B)."""
    from ticket_ensembles.tasks import get_task
    from ticket_ensembles.trainer import finetune
    from ticket_ensembles.vision import load_image_model, load_image_task

    cfg = compose_cfg("train", [*DIGITS, f"trainer.device={device.type}"])
    data = load_image_task(get_task("digits"), cfg)
    counts = {}
    for steps in (2, 4):
        model = load_image_model(cfg.model, get_task("digits"), 0).to(device)
        reads.clear()
        finetune(model, data.train, cfg.trainer, 0, epochs=steps / 4)
        counts[steps] = list(reads)
    return counts


def test_every_method_builds_its_member_on_another_device(tmp_path, glue_dir):
    """Fails where anything made from the model (masks, engine, snapshot, coefficients) stays on the
    CPU while the model moves: before issue 21, FreeTickets built its engine before the trainer moved
    the model, and its first masked_fill_ mixed the two devices."""
    built = in_fresh_process("_build_every_method", str(tmp_path), str(glue_dir))
    for name in CASES:
        members = [Path(p) for p in built[name]]
        assert members and all(store.is_complete(m) for m in members), name
        for member in members:
            logits, _ = store.read_predictions(member / "predictions.npz")
            assert np.isfinite(logits).all(), member
            facts = json.loads((member / "run.json").read_text())
            assert facts["device"] == "simgpu" and facts["tf32"] is False
    assert [Path(p).name for p in built["active_lt"]] == ["seed_1"]
    assert store.is_complete(Path(built["active_lt"][0]).parent / "seed_0")  # its chain, on the device too
    # the loss is summed on the device: one read at the end of a finetune, however many steps
    reads = built["host_reads"]
    assert reads["2"] == reads["4"] == ["aten::_local_scalar_dense"], reads


def test_hooks_made_before_the_move_are_refused(monkeypatch):
    """The trainer's own guard: hooks (here a sparse engine) made from a model that is not on the device."""
    from ticket_ensembles import trainer
    from ticket_ensembles.sparse import SparseEngine, UpdateRule
    from ticket_ensembles.tasks import get_task
    from ticket_ensembles.vision import load_image_model, load_image_task

    cfg = compose_cfg("train", DIGITS)
    model = load_image_model(cfg.model, get_task("digits"), 0)
    engine = SparseEngine(model, {"fc.weight": torch.ones_like(model.fc.weight, dtype=torch.bool)}, UpdateRule())
    data = load_image_task(get_task("digits"), cfg)
    monkeypatch.setattr(trainer, "resolve_device", lambda name: torch.device("cuda", 0))  # it stops before CUDA
    try:
        with pytest.raises(RuntimeError, match="hooks made from a model that is not on cuda:0"):
            trainer.finetune(model, data.train, cfg.trainer, 0, hooks=engine)
    finally:
        engine.close()
