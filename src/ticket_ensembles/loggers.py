"""Experiment loggers: nothing, or Weights & Biases that never hangs without a network.

With no API key configured, W&B runs offline (sync later with ``wandb sync``); an explicit
``logger.mode`` or ``WANDB_MODE`` wins.
"""
from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from .errors import UserError

_MODES = ("online", "offline", "disabled")


def wandb_mode(requested: str | None) -> str:
    """The W&B mode to use: the requested one, else online only when a key is configured."""
    if requested:
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if _has_api_key() else "offline"


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc(os.environ.get("NETRC", Path.home() / ".netrc")).hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in h for h in hosts)


def init_wandb(logger_cfg, *, job_type: str, group: str, name: str, config: dict, dir: str | None = None):
    """Start a W&B run (or return None when ``logger.name`` is not ``wandb``)."""
    if logger_cfg is None or logger_cfg.name != "wandb":
        return None
    import wandb

    if os.environ.get("WANDB_MODE") == "":
        del os.environ["WANDB_MODE"]  # an empty value would make wandb itself fail
    mode = wandb_mode(logger_cfg.mode)
    if mode not in _MODES:
        raise UserError(f"logger.mode={mode!r} is not a W&B mode: use one of {', '.join(_MODES)}")
    if dir:
        Path(dir).mkdir(parents=True, exist_ok=True)
    return wandb.init(
        project=logger_cfg.project, entity=logger_cfg.entity, group=logger_cfg.group or group,
        name=name, job_type=job_type, config=config, tags=list(logger_cfg.tags), mode=mode, dir=dir,
        reinit="finish_previous", settings=wandb.Settings(init_timeout=60, silent=True),
    )


class RunLogger:
    """What training logs to: a W&B run, or nothing. Used as a context manager."""

    def __init__(self, run: Any = None):
        self.run = run
        self._step = 0

    def log(self, metrics: dict[str, float]) -> None:
        self._step += 1
        if self.run is not None:
            self.run.log(metrics, step=self._step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, exc_type, *_):
        if self.run is not None:
            self.run.finish(exit_code=0 if exc_type is None else 1)
