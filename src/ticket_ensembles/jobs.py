"""Runs inside submitit jobs (hydra/launcher=submitit_slurm, submitit_local): failures the launcher sees.

A job that ends with ``sys.exit`` leaves no result file, so the launching command learns of
it only from ``sacct`` (and never on a cluster without accounting). Inside a job, a failure is
therefore raised as :class:`JobFailed`: Hydra stores it as the job's return value, submitit
writes that into the job's result file, and the launching command prints it as one line with
the job's log folder as soon as the file appears.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import UserError

SLURM_SIGNAL_SLACK_S = 90  # SLURM may send the time-limit signal up to 60 s early; plus its polling


class JobFailed(UserError):
    """A job of a sweep failed; the message names the job, its error and its log folder."""


def in_submitit_job() -> bool:
    return bool(os.environ.get("SUBMITIT_FOLDER"))  # set by submitit's process_job in every job


def job_report(message: str) -> str:
    """``job #<n> (<cluster id>) failed: <message> (its logs: <folder>/)``, from inside a submitit job."""
    import submitit

    env = submitit.JobEnvironment()
    num = _hydra_setting("job.num")
    which = f"job #{num} ({env.job_id})" if num is not None else f"job {env.job_id}"
    return f"{which} failed: {message} (its logs: {env.paths.stdout.parent}/)"


def _hydra_setting(key: str):
    """``hydra.<key>`` of the running job, None outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        return OmegaConf.select(HydraConfig.get(), key)
    except Exception:  # no Hydra job here (e.g. a benchmark), or a launcher without the key
        return None


@contextlib.contextmanager
def requeue_only_with_progress(store_dir: str | Path, seed: int) -> Iterator[None]:
    """In a submitit job: a time limit that ends before the job saved anything fails it with one line.

    submitit requeues a job on SIGUSR2 up to ``max_num_timeout`` times; a job whose time limit
    is shorter than one pruning round (or one dense run) would start over each time and never
    finish. If the signal comes at the time limit and no pruning round or member was saved
    since the job started, the job fails instead, saying which setting to raise.
    """
    signum = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), signal.SIGUSR2)
    submitit_handler = signal.getsignal(signum)
    timeout_min, delay_s = _hydra_setting("launcher.timeout_min"), _hydra_setting("launcher.signal_delay_s") or 0
    if (not in_submitit_job() or not callable(submitit_handler) or not timeout_min
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    started, rounds_before = time.time(), _rounds_saved()

    def on_signal(sig, frame):
        elapsed = time.time() - started
        at_time_limit = elapsed + delay_s + SLURM_SIGNAL_SLACK_S >= timeout_min * 60  # else a preemption
        if at_time_limit and _rounds_saved() == rounds_before and not _members_completed_since(store_dir, seed, started):
            raise UserError(
                f"the job's time limit (hydra.launcher.timeout_min={timeout_min}) ended {elapsed:.0f} s after it "
                "started, before it saved a pruning round or a member, so every requeue would start over: set "
                "hydra.launcher.timeout_min above one pruning round (or one dense run) plus "
                f"hydra.launcher.signal_delay_s={delay_s} s and a minute of slack")
        submitit_handler(sig, frame)

    signal.signal(signum, on_signal)
    try:
        yield
    finally:
        signal.signal(signum, submitit_handler)


def _rounds_saved() -> int:
    from . import ticket_work

    return ticket_work.ROUNDS_SAVED


def _members_completed_since(store_dir: str | Path, seed: int, since: float) -> bool:
    """A member of this seed (any task, model, method; EDST tickets too) completed since ``since``."""
    root = Path(store_dir)
    markers = [*root.glob(f"*/*/*/seed_{seed}/COMPLETE"), *root.glob(f"*/*/*/seed_{seed}_ticket_*/COMPLETE")]
    return any(_mtime(m) >= since for m in markers)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
