"""The prepared GPU check (scripts/gpu_check.py, `make gpu-check`) runs end to end on a CPU (--dry-run).

Not part of `make test`: the check itself, which needs a GPU. This runs its every section at tiny sizes,
with members of each kind (MiniLM, the bert-base-shaped model, digits EDST, fp16).
"""
from __future__ import annotations

import json

from conftest import run_script

MEMBERS = ["baseline_fp16", "bert_base_shaped_dst", "freetickets_edst_digits"]


def test_gpu_check_dry_run_writes_its_report(tmp_path, glue_dir):
    out = tmp_path / "gpu_check.json"
    res = run_script("scripts/gpu_check.py", "--dry-run", "--out", str(out), "--glue-dir", str(glue_dir),
                     "--members", *MEMBERS, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] and report["errors"] == [] and report["installed_from_bundle"] == []
    assert set(report["members"]) == set(MEMBERS)
    for name, member in report["members"].items():
        assert member["ok"] and member["device"] == "cpu", name
    assert report["members"]["baseline_fp16"]["precision"] == "fp16"
    assert report["members"]["freetickets_edst_digits"]["members"] == ["seed_0_ticket_0", "seed_0_ticket_1"]
    for model in ("minilm_l6", "bert_base_shaped", "wrn10_1"):
        times = report["step_times"][model]
        assert times["tf32"] is None  # a CPU has none
        assert all(times[p]["s_per_step"] > 0 for p in ("fp32", "bf16", "fp16"))
    assert report["ours_vs_trainer"]["fp32"]["ours_over_trainer"] > 0


def test_gpu_check_refuses_without_a_gpu_or_mrpc(tmp_path):
    res = run_script("scripts/gpu_check.py", "--out", str(tmp_path / "x.json"), timeout=120)
    assert res.returncode == 2 and "torch sees no CUDA GPU" in res.stderr and "--dry-run" in res.stderr
    assert not (tmp_path / "x.json").exists()
