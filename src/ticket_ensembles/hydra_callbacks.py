"""A Hydra callback that shows one progress bar for a whole multirun (with the basic launcher).

With the SLURM launcher it also lets submitit see job states on a cluster without accounting
(ticket_ensembles.slurm_state).
"""
from __future__ import annotations

import math
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


class SweepProgress(Callback):
    """``hydra.callbacks.sweep_progress``: members done / members in the sweep."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __getstate__(self) -> dict:
        return {"bar": None}  # joblib/submitit pickle the callbacks into workers; a tqdm bar cannot travel

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.launcher.get("_target_", "")).endswith("SlurmLauncher"):
            from .slurm_state import watch_without_accounting

            watch_without_accounting()  # a job killed on a cluster without sacct must not hang the sweep
        if not str(config.hydra.launcher.get("_target_", "")).endswith("BasicLauncher"):
            return  # joblib/submitit run jobs in other processes: this process never sees a job end
        self.bar = tqdm(total=count_jobs(config), desc="sweep", unit="run", position=1, dynamic_ncols=True)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
