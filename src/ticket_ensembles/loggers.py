"""Experiment loggers: nothing, or Weights & Biases runs laid out for seed sweeps (docs/wandb.md).

One W&B run per member, named ``<method>/seed_<s>`` (EDST ``..._ticket_<t>``) in the group
``<experiment>/<task>/<model>`` that the evaluation run shares; ``train/*`` and ``eval/*`` keys
against ``train/global_step``. With no API key configured W&B runs offline; an online run whose
server does not answer within ``logger.init_timeout`` seconds is written offline instead (one
warning says how to ``wandb sync`` it), so W&B never costs a member or a report.
"""
from __future__ import annotations

import logging
import math
import netrc
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import UserError

log = logging.getLogger(__name__)
_MODES = ("online", "offline", "disabled")
STEP = "train/global_step"
_unreachable: set[str] = set()  # servers that timed out in this process: later runs go offline at once


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


def wandb_on(logger_cfg) -> bool:
    """logger=wandb in a mode that records something (``disabled`` costs nothing, as logger=none)."""
    return logger_cfg is not None and logger_cfg.name == "wandb" and wandb_mode(logger_cfg.mode) != "disabled"


def wandb_group(logger_cfg, experiment: str, task: str, model: str) -> str:
    """``logger.group``, else ``<experiment>/<task>/<model folder>``: training and evaluation alike."""
    return logger_cfg.group or f"{experiment}/{task}/{model}"


def run_folder(run) -> Path:
    """The run's local folder (``offline-run-...``): what ``wandb sync`` takes."""
    return Path(run.dir).parent


def init_wandb(logger_cfg, *, job_type: str, group: str, name: str, config: dict, tags: tuple = (),
               dir: str | None = None):
    """Start a W&B run (None when ``logger.name`` is not ``wandb``); offline if the server is unreachable."""
    if not wandb_on(logger_cfg):
        return None
    os.environ.setdefault("WANDB_SILENT", "true")  # our own line says mode and folder (WANDB_SILENT=false: wandb's)
    import wandb

    if os.environ.get("WANDB_MODE") == "":
        del os.environ["WANDB_MODE"]  # an empty value would make wandb itself fail
    mode = wandb_mode(logger_cfg.mode)
    if mode not in _MODES:
        raise UserError(f"logger.mode={mode!r} is not a W&B mode: use one of {', '.join(_MODES)}")
    timeout = float(logger_cfg.init_timeout)
    if not timeout > 0:
        raise UserError(f"logger.init_timeout={logger_cfg.init_timeout} must be a positive number of seconds")
    if dir:
        Path(dir).mkdir(parents=True, exist_ok=True)
    kwargs = dict(project=logger_cfg.project, entity=logger_cfg.entity, group=group, name=name,
                  job_type=job_type, config=config, tags=[*logger_cfg.tags, *tags], dir=dir, reinit="create_new")
    server = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    if mode != "online" or server not in _unreachable:
        try:
            run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=timeout, silent=True), **kwargs)
            log.info("W&B %s: run %s (%s) in %s", mode, name, job_type, run_folder(run))
            return run
        except wandb.errors.Error as e:
            if mode != "online":
                raise
            _unreachable.add(server)
            run = wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            log.warning("W&B server %s not reachable within logger.init_timeout=%gs (%s): runs are written offline "
                        "instead, this one to %s; upload them later with `wandb sync %s`", server, timeout, reason,
                        run_folder(run), run_folder(run).parent / "offline-run-*")
            return run
    run = wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)
    log.info("W&B offline (%s was unreachable earlier in this process): run %s (%s) in %s", server, name,
             job_type, run_folder(run))
    return run


def define_axes(run) -> None:
    """Every train/* and eval/* key plots against train/global_step (not W&B's log-call counter)."""
    run.define_metric(STEP)
    run.define_metric("train/*", step_metric=STEP)
    run.define_metric("eval/*", step_metric=STEP)


@dataclass
class _Finetune:
    """What the logger needs to know about the finetune in progress."""

    phase: str
    round_no: int | None
    log_every: int
    batch_size: int
    evaluate: Callable[[], dict[str, float]]
    base: int  # train/global_step before this finetune
    last_step: int = 0
    last_time: float = 0.0


class RunLogger:
    """Training's W&B runs, one per member, each opened when its training starts; or nothing.

    ``open_run(seed, ticket, built_by)`` starts a member's run; ``members`` are the (seed, ticket)
    keys in the order they are written. Disabled (no ``open_run``) it is never called in the loop.
    """

    def __init__(self, open_run: Callable[..., Any] | None = None, members=(), eval_every_steps: int | None = None,
                 built_by: int | None = None):
        self._open = open_run
        self.pending = list(members)
        self.eval_every_steps = eval_every_steps
        self.built_by = built_by
        self.run = None
        self.global_step = 0  # continues over the pruning rounds, final finetune and EDST phases
        self._ft: _Finetune | None = None

    @property
    def enabled(self) -> bool:
        return self._open is not None

    def for_members(self, members, built_by: int | None = None) -> "RunLogger":
        """A logger of its own for members built inside this run (an active_lt predecessor)."""
        return RunLogger(self._open, members, self.eval_every_steps, built_by)

    def _ensure_run(self, key: tuple[int, int | None] | None = None) -> None:
        if self.run is not None or not self.enabled:
            return
        key = key or (self.pending[0] if self.pending else None)
        if key is not None:
            self.run = self._open(*key, self.built_by)
            if self.run is not None:
                define_axes(self.run)

    def begin_finetune(self, phase: str, *, round_no: int | None, log_every: int, batch_size: int,
                       evaluate: Callable[[], dict[str, float]]) -> None:
        self._ensure_run()
        self._ft = _Finetune(phase, round_no, max(1, int(log_every)), int(batch_size), evaluate, self.global_step,
                             last_time=time.perf_counter())

    def after_step(self, step: int, total: int, *, loss, lr: float, epoch: float, grad_norm=None) -> None:
        """Called by the training loop after each optimizer step: train/* and dev evaluations when due."""
        ft = self._ft
        if self.run is None:
            return  # nothing to log to: no dev pass either
        if step % ft.log_every == 0 or step == total:
            now = time.perf_counter()
            speed = (step - ft.last_step) * ft.batch_size / max(now - ft.last_time, 1e-9)
            metrics = {"train/loss": loss.item(), "train/learning_rate": float(lr), "train/epoch": float(epoch),
                       "train/samples_per_second": speed}
            if grad_norm is not None:  # computed only when trainer.max_grad_norm clips
                metrics["train/grad_norm"] = float(grad_norm)
            self.log(metrics, ft.base + step)
            ft.last_step, ft.last_time = step, now
        every = self.eval_every_steps if self.eval_every_steps is not None else math.ceil(total / 10)
        if step == total or (every and step % every == 0):
            self.log({f"eval/{k}": v for k, v in ft.evaluate().items()}, ft.base + step)
            ft.last_time = time.perf_counter()  # a dev pass is not training throughput

    def end_finetune(self, steps: int) -> None:
        self.global_step += steps
        self._ft = None

    def log(self, metrics: dict[str, Any], global_step: int) -> None:
        if self.run is None:
            return
        beside = {"train/phase": self._ft.phase} if self._ft else {}
        if self._ft and self._ft.round_no is not None:
            beside["train/round"] = self._ft.round_no
        self.run.log(metrics | beside | {STEP: global_step})

    def member_done(self, seed: int, ticket: int | None, summary: dict[str, Any]) -> None:
        """The member is in the store: its metrics and run facts to the summary; its run ends."""
        if not self.enabled:
            return
        self._ensure_run((seed, ticket))
        if (seed, ticket) in self.pending:
            self.pending.remove((seed, ticket))
        if self.run is not None:
            self.run.summary.update(summary | {STEP: self.global_step})
            self.run.finish()
            self.run = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, exc_type, *_):
        if self.run is not None:
            self.run.finish(exit_code=0 if exc_type is None else 1)
            self.run = None
