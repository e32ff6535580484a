"""One GPU per job of a multirun on one node, tested on a CPU by what each job is told."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from joblib import Parallel, delayed
from omegaconf import OmegaConf

from conftest import CONF, compose_cfg
from ticket_ensembles import gpus


def _worker(folder: str, slots: int, gpu_count: int, workers: int) -> int:
    """A joblib job: claim a slot, say which GPU it was told, hold it until every worker has one."""
    with gpus.claim_slot(folder, slots, poll_s=0.05) as slot:
        gpu = gpus.slot_gpu(slot, gpu_count)
        Path(folder, f"told_{slot}").write_text(str(gpu))
        deadline = time.time() + 60
        while len(list(Path(folder).glob("told_*"))) < workers and time.time() < deadline:
            time.sleep(0.05)
        return gpu


def test_two_joblib_workers_on_a_two_gpu_node_are_told_different_gpus(tmp_path):
    told = Parallel(n_jobs=2, prefer="processes")(delayed(_worker)(str(tmp_path), 2, 2, 2) for _ in range(2))
    assert sorted(told) == [0, 1]


def test_slots_go_round_the_gpus_and_a_finished_job_frees_its_own(tmp_path):
    with gpus.claim_slot(tmp_path, 4) as a, gpus.claim_slot(tmp_path, 4) as b, gpus.claim_slot(tmp_path, 4) as c:
        assert [gpus.slot_gpu(s, 2) for s in (a, b, c)] == [0, 1, 0]  # n_jobs = 4 on 2 GPUs: two on each
        with gpus.claim_slot(tmp_path, 4) as d:
            assert gpus.slot_gpu(d, 2) == 1
    with gpus.claim_slot(tmp_path, 4) as again:
        assert again == 0  # released at the end of the job, not at the end of the worker process


def _hydra(tmp_path, launcher: str, *overrides: str):
    from hydra import compose, initialize_config_dir

    from ticket_ensembles.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", [f"hydra/launcher={launcher}", f"paths.root_dir={tmp_path}", *overrides],
                      return_hydra_config=True)
    hydra_cfg = cfg.hydra
    OmegaConf.set_readonly(hydra_cfg, False)
    hydra_cfg.mode = "RunMode.MULTIRUN"
    return cfg, hydra_cfg


@pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema")
def test_a_joblib_job_on_a_two_gpu_node_runs_on_the_gpu_of_its_slot(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"GPU {index}")
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    cfg, hydra_cfg = _hydra(tmp_path, "joblib", "hydra.launcher.n_jobs=2")
    assert gpus.sweep_slots(hydra_cfg, 2) == 2
    with caplog.at_level(logging.INFO), gpus.claim_slot(Path(hydra_cfg.sweep.dir) / ".gpu_slots", 1):
        with gpus.job_device(cfg, hydra_cfg):  # slot 0 is held by another worker
            assert cfg.trainer.device == "cuda:1" and chosen == [1]
    assert cfg.trainer.device == "auto"
    assert "device: cuda:1 (GPU 1) (slot 1 of this sweep's 2 on 2 GPU(s))" in caplog.messages
    pinned = compose_cfg("train", ["trainer.device=cuda:0"])
    with gpus.job_device(pinned, hydra_cfg):
        assert pinned.trainer.device == "cuda:0"  # a device named by the user is left as it is


@pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema")
def test_launcher_configs_request_and_use_gpus(tmp_path):
    cfg, hydra_cfg = _hydra(tmp_path, "submitit_local")
    assert hydra_cfg.launcher.gpus_per_node >= 1 and gpus.sweep_slots(hydra_cfg, 4) == 4  # one job per GPU
    _, slurm = _hydra(tmp_path, "submitit_slurm")
    assert slurm.launcher.gpus_per_node == 1 and gpus.sweep_slots(slurm, 1) is None  # SLURM assigns the GPU
    assert gpus.sweep_slots(SimpleNamespace(get=lambda key: "RunMode.RUN"), 4) is None  # a single run: cuda:0
