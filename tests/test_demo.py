"""make demo (multirun_sweeps/demo.sh) end to end at tiny scale: the first thing a new user runs."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, TINY, entry_python
from ticket_ensembles import store

METHOD_ROWS = ("BASELINE", "BAGGING", "BASE-LT", "ACTIVE-LT", "RANDOM-LT", "FREETICKETS-DST")


@pytest.mark.slow
def test_demo_trains_every_method_then_prints_table1_and_where_everything_is(glue_dir, tmp_path):
    # the demo's own sweeps and evaluate call, with the model cut to one layer and 32 rows
    tiny = [o for o in TINY if o != "trainer.progress=false"] + ["data.max_train_samples=32",
                                                                 f"data.glue_dir={glue_dir}"]
    # DEMO_SEEDS=2 (the demo's 3 less one, for time): the same sweep, pairs in the table
    env = {**os.environ, "TE_ROOT": str(tmp_path), "PYTHON": entry_python(), "SWEEP_ARGS": " ".join(tiny),
           "DEMO_SEEDS": "2",
           "EVAL_ARGS": "model.num_layers=1", "WANDB_MODE": "offline"}
    res = subprocess.run(["bash", "multirun_sweeps/demo.sh"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]

    # before training, an estimate of its own duration measured on this machine
    assert re.search(r"^Estimated demo time on this machine: about \d+ min for 12 members \(\d+\.\d\d s per "
                     r"training step, (fp32|bf16), \d parallel workers", res.stdout, re.M), res.stdout[:1500]

    members = store.list_members(tmp_path / "demo" / "store", "sst2", "minilm_l6_L1")
    seeds = [f"seed_{s}" for s in range(2)]  # DEMO_SEEDS per method, one group
    assert {m: sorted(v) for m, v in members.items()} == {
        m: seeds for m in ("baseline", "bagging", "base_lt", "active_lt", "random_lt", "freetickets_dst")}

    # Table 1 in the terminal, one row per method, ensembles of k = 2 (one per group)
    assert "# Table 1 · sst2 · minilm_l6_L1" in res.stdout and "ens. (k=2)" in res.stdout  # every pair of the group
    for row in METHOD_ROWS:
        assert re.search(rf"^\| {row} \| \d+\.\d\d \|", res.stdout, re.M), row

    # it says where the reports, the store and the W&B offline run are, and they are there
    where = dict(re.findall(r"^(Reports|Member store|W&B offline run)[^:]*: (\S+)$", res.stdout, re.M))
    assert set(where) == {"Reports", "Member store", "W&B offline run"}, res.stdout[-1500:]
    report = Path(where["Reports"])  # under TE_ROOT, an absolute path
    assert {"table1.md", "table2.md", "summary.csv", "combinations.csv", "figure3.png"} <= {
        p.name for p in report.iterdir()}
    assert Path(where["Member store"]).is_dir()
    assert Path(where["W&B offline run"]).name.startswith("offline-run-")
    assert Path(where["W&B offline run"]).is_dir()

    # real IMP tickets: every pruning round as long as the final finetune, each ending with a dev score
    ticket = json.loads((tmp_path / "demo/store/sst2/minilm_l6_L1/base_lt/seed_0/run.json").read_text())
    final_steps = ticket["optimizer_steps"] - sum(r["steps"] for r in ticket["rounds"])
    assert [r["steps"] for r in ticket["rounds"]] == [final_steps] * 3 and final_steps >= 1
    assert all("accuracy" in r["dev"] for r in ticket["rounds"])
    dst = json.loads((tmp_path / "demo/store/sst2/minilm_l6_L1/freetickets_dst/seed_0/run.json").read_text())
    assert "topology_updates" in dst  # 2 steps here; at the demo's size: the test below

    # progress: a bar for the whole sweep (two parallel workers report to it) and one for each finetune
    assert re.search(r"sweep: 100%\|.*\| 12/12", res.stderr)  # six methods x 2 seeds, one sweep
    for finetune in ("seed 1", "seed 1 round 1", "seed 1 final", "seed 1 dst"):  # dense, ticket, DST
        assert re.search(rf"{finetune}: +\d+%\|", res.stderr), finetune


def test_demo_sizes_make_real_tickets_and_dynamic_dst_members():
    """At the demo's own size, a pruning round is a full finetune and DST updates its topology >= 2 times."""
    import math

    from conftest import compose_cfg
    from ticket_ensembles.sparse.engine import is_update_step

    tickets = compose_cfg("train", ["experiment=demo_base_lt"])
    assert tickets.method.epochs_per_round is None  # method.epochs_per_round null: rounds of trainer.epochs
    dst = compose_cfg("train", ["experiment=demo_dst"])
    steps = math.ceil(dst.data.max_train_samples / dst.trainer.batch_size) * math.ceil(dst.trainer.epochs)
    updates = [s for s in range(1, steps + 1) if is_update_step(s, dst.method.update_frequency, steps)]
    assert len(updates) >= 2, (steps, dst.method.update_frequency)
