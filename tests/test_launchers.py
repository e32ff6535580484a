"""Parallel launchers and concurrent workers: no member lost, none built twice, none read half-built."""
from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, TINY, compose_cfg, entry_python, run_script
from evaluation_stores import noisy_logits, write_member
from ticket_ensembles import store
from ticket_ensembles.cli import failed_job
from ticket_ensembles.evaluation import evaluate

SMALL = [*TINY, "data.max_train_samples=32", "trainer.num_threads=1"]


@pytest.mark.slow
def test_submitit_local_sweep_builds_every_member(glue_dir, tmp_path):
    args = ["-m", "hydra/launcher=submitit_local", *SMALL, f"data.glue_dir={glue_dir}",
            f"paths.root_dir={tmp_path}", "seed=range(2)"]
    first = run_script("train.py", *args)
    assert first.returncode == 0, first.stderr[-3000:]
    members = store.list_members(tmp_path / "store", "mrpc", "minilm_l6_L1")["baseline"]
    assert sorted(members) == ["seed_0", "seed_1"]
    for folder in members.values():
        logits, labels = store.read_predictions(folder / "predictions.npz")
        assert logits.shape == (64, 2) and labels.shape == (64,)
    assert len(list((tmp_path / "logs" / "multiruns").rglob(".submitit/*/*_log.out"))) == 2  # one job each


@pytest.mark.slow
def test_two_workers_on_one_member_build_it_once(glue_dir, tmp_path):
    cmd = [entry_python(), str(ROOT / "train.py"), *SMALL, f"data.glue_dir={glue_dir}",
           f"paths.root_dir={tmp_path}", "seed=3"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    wrote = [out for out, _ in outs if "wrote " in out]
    skipped = [out for out, _ in outs if "skip: " in out]
    assert len(wrote) == 1 and len(skipped) == 1, outs
    member = store.member_dir(tmp_path / "store", "mrpc", "minilm_l6_L1", "baseline", 3)
    assert store.is_complete(member)
    store.read_predictions(member / "predictions.npz")
    assert sorted(p.name for p in member.parent.iterdir()) == [".locks", "seed_3"]


def test_evaluate_reads_only_complete_members(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 30)
    root = tmp_path / "store"
    for seed in (0, 1):
        write_member(root, "baseline", seed, noisy_logits(rng, labels, 1.0), labels)
    folder = root / "mrpc" / "tiny" / "baseline"
    # a killed writer's temporary folder, and a folder that never got its COMPLETE marker
    partial = folder / ".seed_2.partial-0a1b2c3d"
    partial.mkdir()
    store.write_predictions(partial, "predictions.npz", np.zeros((5, 2)), np.zeros(5, int))
    unfinished = folder / "seed_3"
    unfinished.mkdir()
    (unfinished / "predictions.npz").write_bytes(b"PK\x03\x04 truncated")
    cfg = compose_cfg("evaluate", ["model.name=tiny", f"paths.root_dir={tmp_path}", "ensemble.max_size=2",
                                   "ensemble.groups=[[0,1,2,3]]"])
    out = evaluate(cfg)
    groups = pd.read_csv(out / "groups.csv")
    assert groups.members.tolist() == ["seed_0 seed_1"] and groups.missing_seeds.tolist() == ["2 3"]


def test_a_failed_submitit_job_is_reported_in_one_line():
    message = ("Job 11314 (task: 0) with path /runs/x/.submitit/11314/11314_0_result.pkl\n"
               "has not produced any output (state: FINISHED)\nError stream produced:\n"
               "----------------------------------------\n"
               "error: unknown trainer.lr_schedule 'bogus': use linear, cosine, constant or multistep\n")
    line = failed_job(message)
    assert "\n" not in line
    assert line == ("a job of the sweep failed: unknown trainer.lr_schedule 'bogus': use linear, cosine, constant "
                    "or multistep (its logs: /runs/x/.submitit/11314/)")
    cancelled = ("Job 41 (task: 0) with path /runs/y/.submitit/41/41_0_result.pkl\nhas not produced any output "
                 "(state: CANCELLED by 0)\nError stream produced:\n----\n"
                 "slurmstepd-node1: error: *** JOB 41 ON node1 CANCELLED AT 2026-12-04T14:31:40 ***\n"
                 "srun: forcing job termination\nsrun: error: Timed out waiting for job step to complete\n")
    assert failed_job(cancelled) == ("a job of the sweep failed: JOB 41 ON node1 CANCELLED AT 2026-12-04T14:31:40 "
                                     "(its logs: /runs/y/.submitit/41/)")


@pytest.mark.filterwarnings("ignore:(?s).*validated against ConfigStore schema")  # on purpose: cli.py says why
def test_slurm_settings_reach_sbatch(tmp_path, monkeypatch):
    """conf/hydra/launcher/submitit_slurm.yaml -> the sbatch script submitit would submit."""
    import os

    import submitit
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    from conftest import CONF
    from ticket_ensembles.config import register_configs

    register_configs()
    (tmp_path / "srun").write_text("#!/bin/sh\n")  # submitit only checks that srun exists
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.timeout_min=90", "hydra.launcher.account=lab"],
                      return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher)
    assert params.pop("_target_").endswith("SlurmLauncher")
    # what the plugin's launch() does with them
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm",
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    params.pop("submitit_folder")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()} | {"name": "t"})
    sbatch = executor._executor._make_submission_file_text("python -u job.py", "uid")
    for flag in ["--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB",
                 "--signal=USR2@120", "--account=lab"]:
        assert f"#SBATCH {flag}" in sbatch, sbatch
    assert executor._executor.max_num_timeout == 20  # requeues on timeout / preemption


def _sbatch_error(stderr: str) -> Exception:
    """What submitit raises when sbatch refuses a submission (its stderr, from the CalledProcessError)."""
    from submitit.core.utils import FailedJobError

    try:
        raise FailedJobError(stderr) from subprocess.CalledProcessError(1, ["sbatch", "/x/.submission_file.sh"])
    except FailedJobError as e:
        return e


@pytest.mark.parametrize(("stderr", "says"), [
    ("sbatch: error: Invalid generic resource (gres) specification", "set hydra.launcher.gpus_per_node=0"),
    ("sbatch: error: invalid partition specified: gpu\nsbatch: error: Batch job submission failed: Invalid "
     "partition name specified", "partition 'gpu' does not exist on this cluster: set hydra.launcher.partition"),
    ("sbatch: error: Batch job submission failed: Requested node configuration is not available",
     "lower hydra.launcher.cpus_per_task, mem_gb or gpus_per_node"),
    ("sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified",
     "Invalid account or account/partition combination specified: fix the hydra.launcher settings"),
])
def test_an_sbatch_refusal_is_one_line_saying_what_to_set(stderr, says, monkeypatch):
    from ticket_ensembles import cli

    monkeypatch.setattr(cli, "existing_partitions", lambda: "debug")
    line = cli.sbatch_refusal(_sbatch_error(stderr))
    assert says in line and "\n" not in line and line.startswith("sbatch refused the jobs: ")
    assert cli.sbatch_refusal(RuntimeError("not sbatch")) is None


def test_the_launchers_echoes_of_a_reported_failure_are_dropped():
    import io

    from ticket_ensembles.cli import _LauncherEchoFilter

    out = io.StringIO()
    echo = _LauncherEchoFilter(out)
    print("sbatch: error: Invalid generic resource (gres) specification", file=echo)  # submitit's echo
    echo.write("Error executing job with overrides: ['seed=0']\n")  # Hydra's, before a job's error
    assert out.getvalue() == ""
    echo.release()  # the error was not a JobFailed: Hydra's line is news after all
    print("[HYDRA] next", file=echo)
    assert out.getvalue() == "Error executing job with overrides: ['seed=0']\n[HYDRA] next\n"


@pytest.mark.slow
def test_a_failed_submitit_job_reports_its_own_error_and_logs(tmp_path):
    """A job's UserError travels back in its result file (no sys.exit in a job): one line, exit 1."""
    empty = tmp_path / "glue"
    empty.mkdir()
    res = run_script("train.py", "-m", "hydra/launcher=submitit_local", *SMALL, f"data.glue_dir={empty}",
                     f"paths.root_dir={tmp_path}", "seed=0", timeout=300)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    [line] = [x for x in lines if x.startswith("error:")]
    assert line == lines[-1] and "Traceback" not in res.stderr, res.stderr[-3000:]
    [folder] = [p for p in (tmp_path / "logs" / "multiruns").rglob(".submitit/*") if p.name.isdigit()]  # job id
    assert line.startswith("error: job #0 (") and f"GLUE file {empty}/MRPC/train.tsv not found" in line
    assert line.endswith(f"(its logs: {folder}/)")


def test_without_accounting_a_job_that_left_the_queue_counts_as_ended(tmp_path, monkeypatch):
    """slurm_state: sacct fails (no accounting), squeue lists what still runs; the rest has ended."""
    import os

    from ticket_ensembles import slurm_state

    fake = {"sacct": "echo 'sacct: error: Slurm accounting storage is disabled' >&2; exit 1",
            "squeue": "echo '31_0|RUNNING|node1'; echo '31_2|PENDING|'"}
    for name, body in fake.items():
        (tmp_path / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    code, out, _ = slurm_state.states(["31_0", "31_1", "31_2"])
    assert code == 0
    assert out.splitlines() == ["JobID|State|NodeList", "31_0|RUNNING|node1", "31_2|PENDING|", "31_1|ENDED|"]
    from submitit.slurm.slurm import SlurmInfoWatcher

    info = SlurmInfoWatcher().read_info(out)  # what submitit makes of it
    assert info["31_1"]["State"] == "ENDED" and info["31_0"]["State"] == "RUNNING"


def test_a_time_limit_before_any_saved_round_fails_instead_of_requeueing(tmp_path, monkeypatch):
    """jobs.requeue_only_with_progress: submitit's SIGUSR2 handler runs only if the job saved something."""
    import os
    import signal

    from ticket_ensembles import jobs, ticket_work
    from ticket_ensembles.errors import UserError

    requeues = []
    monkeypatch.setenv("SUBMITIT_FOLDER", str(tmp_path))  # as inside a submitit job
    monkeypatch.setattr(jobs, "_hydra_setting", {"launcher.timeout_min": 1, "launcher.signal_delay_s": 30}.get)
    previous = signal.signal(signal.SIGUSR2, lambda *_: requeues.append("requeue"))  # submitit's handler
    try:
        with pytest.raises(UserError, match=r"hydra.launcher.timeout_min=1\) ended .* before it saved a pruning"):
            with jobs.requeue_only_with_progress(tmp_path / "store", seed=0):
                os.kill(os.getpid(), signal.SIGUSR2)
        assert requeues == []
        with jobs.requeue_only_with_progress(tmp_path / "store", seed=0):
            monkeypatch.setattr(ticket_work, "ROUNDS_SAVED", ticket_work.ROUNDS_SAVED + 1)  # a round was saved
            os.kill(os.getpid(), signal.SIGUSR2)
        assert requeues == ["requeue"]
    finally:
        signal.signal(signal.SIGUSR2, previous)
