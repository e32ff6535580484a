"""Hydra callbacks: one progress bar for a whole multirun, under any launcher; no unknown key.

With the SLURM launcher the bar's callback also lets submitit see job states on a cluster without
accounting (ticket_ensembles.slurm_state).
"""
from __future__ import annotations

import math
import sys
import threading
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from tqdm.auto import tqdm


def count_jobs(config: DictConfig) -> int | None:
    """Jobs in a basic-sweeper multirun: the product of the sweep lengths of its overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        overrides = list(config.hydra.overrides.task)
        params = config.hydra.sweeper.get("params") or {}
        overrides += [f"{k}={v}" for k, v in params.items()]
        parsed = OverridesParser.create().parse_overrides(overrides)
        return math.prod(len(list(o.sweep_iterator())) if o.is_sweep_override() else 1 for o in parsed)
    except Exception:  # a sweeper we cannot count: the bar just has no total
        return None


def done_dir(config: DictConfig) -> Path:
    """Where jobs run by other processes (joblib, submitit) mark themselves done for the bar."""
    return Path(str(config.hydra.sweep.dir)) / ".progress"


class KnownKeysOnly(Callback):
    """``hydra.callbacks.known_keys``: a config with a key no schema defines (``+trainer.lrr=1e-5``)
    stops before the run or the sweep starts, in one line with exit code 2 (known_keys.py)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)  # before any job is launched (a SLURM sweep would queue them all)

    @staticmethod
    def _check(config: DictConfig) -> None:
        from .known_keys import unknown_keys, unknown_keys_message

        keys = unknown_keys(config)
        if keys:
            print(f"error: {unknown_keys_message(config, keys)}", file=sys.stderr)
            # Hydra turns a callback's Exception into a warning and goes on; SystemExit is not one
            raise SystemExit(2)  # cli.EXIT_USER_ERROR


_OPEN: list["SweepProgress"] = []  # multiruns whose bar is on screen


def close_progress_bars() -> None:
    """End every sweep bar on screen, so an error line printed next starts a line of its own."""
    for progress in list(_OPEN):
        progress.close()


class SweepProgress(Callback):
    """``hydra.callbacks.sweep_progress``: members done / members in the sweep.

    The basic launcher runs jobs in this process. Parallel launchers run them in workers, which
    touch a file per finished job in ``<sweep dir>/.progress/``; a thread here counts them."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.stop: threading.Event | None = None

    def __getstate__(self) -> dict:
        return {"bar": None, "stop": None}  # joblib/submitit pickle the callbacks into workers; a bar cannot travel

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher"):
            from .slurm_state import watch_without_accounting

            watch_without_accounting()  # a job killed on a cluster without sacct must not hang the sweep
        self.bar = tqdm(total=count_jobs(config), desc="sweep", unit="run", position=1, dynamic_ncols=True)
        _OPEN.append(self)
        if not str(config.hydra.launcher.get("_target_", "")).endswith("BasicLauncher"):
            self.stop = threading.Event()
            threading.Thread(target=self._watch, args=(done_dir(config),), daemon=True).start()

    def _watch(self, folder: Path) -> None:
        while not self.stop.wait(0.5):
            self._count(folder)

    def _count(self, folder: Path) -> None:
        done = len(list(folder.glob("job_*"))) if folder.is_dir() else 0
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)  # the basic launcher: the job ran in this process
        elif str(config.hydra.mode) == "RunMode.MULTIRUN":  # a worker of a parallel launcher
            done_dir(config).mkdir(parents=True, exist_ok=True)
            (done_dir(config) / f"job_{config.hydra.job.num}").touch()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.stop is not None:
            self.stop.set()
            self._count(done_dir(config))
        self.close()

    def close(self) -> None:
        if self.stop is not None:
            self.stop.set()
        if self.bar is not None:
            self.bar.close()
        if self in _OPEN:
            _OPEN.remove(self)
