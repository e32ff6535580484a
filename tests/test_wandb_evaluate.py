"""W&B during evaluation, read back from the offline run files: every Table 1 number in the summary,
the tables and figures (figure4 included), the report as an artifact; and an unreachable server
that still leaves the report written and exit 0."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import wandb

from conftest import run_script
from evaluation_stores import build_methods
from test_evaluation_report import eval_cfg, mrpc_dev_labels
from test_wandb_train import closed_local_port
from ticket_ensembles.evaluation import evaluate
from wandb_records import read_runs

SMALL = ["ensemble.max_size=3", "ensemble.groups=[[0,1,2,3]]"]
METRICS = ["accuracy", "f1", "nll", "ece", "brier"]  # Table 1 for MRPC: task metrics and calibration


def _store(root, glue_dir):
    build_methods(root / "store", {"baseline": 1.5, "base_lt": 1.3, "random_lt": 1.2}, range(4),
                  mrpc_dev_labels(glue_dir), masked=("base_lt", "random_lt"))


def test_evaluation_run_holds_table1_tables_figures_and_the_report(tmp_path, glue_dir, monkeypatch):
    _store(tmp_path, glue_dir)
    monkeypatch.setattr(wandb.Table, "MAX_ROWS", 20)  # 3 methods x 14 subsets: combinations go to an artifact
    out = evaluate(eval_cfg(tmp_path, *SMALL, "logger=wandb", "logger.mode=offline", "experiment_name=paper"))
    (run,) = read_runs(tmp_path / "logs")
    assert (run.name, run.group, run.job_type) == ("evaluate/mrpc/tiny", "paper/mrpc/tiny", "evaluate")
    assert run.exit_code == 0
    assert run.config["member"] == {"phase": "evaluate"} and "evaluate" in run.tags

    summary = pd.read_csv(out / "summary.csv")
    at_k = summary[summary.k == 3].set_index(["method", "metric"])
    for method in ("baseline", "base_lt", "random_lt"):
        for metric in METRICS:
            row = at_k.loc[(method, metric)]
            assert np.isclose(run.summary[f"{method}/{metric}/single"], row.single_mean)
            assert np.isclose(run.summary[f"{method}/{metric}/ens"], row.ens_mean)
            for other in {"baseline", "base_lt"} - {method}:
                assert np.isclose(run.summary[f"{method}/{metric}/p_vs_{other}"], row[f"p_vs_{other}"])
    assert "baseline/accuracy/p_vs_baseline" not in run.summary  # no test of a method against itself

    logged = {k: v for row in run.history for k, v in row.items() if isinstance(v, dict)}
    assert {logged[t]["_type"] for t in ("summary", "diversity", "members")} == {"table-file"}
    assert "combinations" not in logged and "combinations-paper-mrpc-tiny" in run.artifacts
    figures = {"figure3", "figure4_base_lt", "figure4_random_lt"}
    assert figures <= set(logged) and {logged[f]["_type"] for f in figures} == {"image-file"}
    assert "report-paper-mrpc-tiny" in run.artifacts


def test_unreachable_server_still_writes_the_report_and_exits_0(tmp_path, glue_dir):
    _store(tmp_path, glue_dir)
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "x" * 40, "HOME": str(tmp_path),
           "WANDB_BASE_URL": f"http://127.0.0.1:{closed_local_port()}"}
    start = time.monotonic()
    res = run_script("evaluate.py", f"paths.root_dir={tmp_path}", f"hydra.run.dir={tmp_path}/logs/hydra",
                     "model.name=tiny", *SMALL, "logger=wandb", "logger.init_timeout=3", env=env, timeout=120)
    elapsed = time.monotonic() - start
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "reports" / "mrpc" / "tiny" / "table1.md").is_file()
    warnings = [line for line in (res.stdout + res.stderr).splitlines() if "wandb sync" in line]
    assert len(warnings) == 1 and "not reachable within logger.init_timeout=3s" in warnings[0], res.stdout
    (run,) = read_runs(tmp_path / "logs")  # the offline run the warning names, complete
    assert run.job_type == "evaluate" and run.exit_code == 0 and "baseline/accuracy/ens" in run.summary
    assert elapsed < 60, elapsed  # bounded: ~70 s and a traceback before the fallback
