"""``train(cfg)``: one run of one method for one seed, called by the root train.py."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import store
from .data import TaskData, load_text_task
from .errors import UserError
from .fingerprint import describe, differences, member_settings
from .loggers import RunLogger, init_wandb, wandb_group, wandb_on
from .methods import RunContext, get_method
from .models import check_num_layers, load_model, load_tokenizer
from .tasks import TaskSpec, get_task
from .gpus import job_device
from .trainer import device_facts, run_precision

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> list[Path]:
    """Build the members of ``cfg.method`` for ``cfg.seed`` into the store; skip complete ones."""
    if int(cfg.seed) < 0:  # member folders are seed_<n>: a negative seed would be invisible in the store
        raise UserError(f"seed={cfg.seed} must be 0 or more")
    task = get_task(cfg.task.name)
    method = get_method(cfg.method.name)(cfg)
    mdir = store.method_dir(cfg.paths.store_dir, task.name, store.model_folder(cfg.model), method.store_name)
    members = [mdir / store.member_name(s, t) for s, t in method.member_keys()]
    if _all_complete(cfg, members):
        return members
    if task.modality == "text":
        check_num_layers(cfg.model)  # before the lock: nothing is written for a model that cannot be built
    # The first member's lock guards the whole run: a second worker waits, then skips.
    with store.member_lock(members[0]):
        if _all_complete(cfg, members):
            return members
        with job_device(cfg):  # logs the device first; a multirun job on a GPU node takes a GPU of its own
            if cfg.trainer.num_threads:
                torch.set_num_threads(int(cfg.trainer.num_threads))
            log.info("torch threads: %d", torch.get_num_threads())  # parallel launchers: cores / workers
            log.info("precision: %s (trainer.precision=%s)%s", run_precision(cfg.trainer),
                     getattr(cfg.trainer.precision, "value", cfg.trainer.precision),
                     ", TF32 on" if device_facts(cfg.trainer)["tf32"] else "")
            data, load = _task_data_and_model_loader(cfg, task)
            with _member_logger(cfg, task, method, members) as logger:
                ctx = RunContext(cfg=cfg, task=task, data=data, logger=logger, model_loader=load, method_dir=mdir)
                method.build(ctx)
    log.info("wrote %s", "; ".join(f"{m}{member_scores(task, m)}" for m in members))
    return members


def member_scores(task: TaskSpec, member: Path) -> str:
    """`` (dev accuracy 71.32, f1 81.69)``: the task's metrics from a member's metrics.json ('' if none)."""
    try:
        metrics = json.loads((Path(member) / "metrics.json").read_text())
    except (OSError, ValueError):
        return ""
    first = task.eval_splits[0]
    keys = [m if split == first else f"{split}/{m}" for split in task.eval_splits for m in task.metrics]
    shown = [f"{k} {metrics[k]:.2f}" for k in keys if isinstance(metrics.get(k), (int, float))]
    where = "dev" if first.startswith("validation") else first
    return f" ({where} {', '.join(shown)})" if shown else ""


def _all_complete(cfg: DictConfig, members: list[Path]) -> bool:
    if not cfg.overwrite:
        for member in members:
            check_same_settings(cfg, member)
    done = not cfg.overwrite and all(store.is_complete(m) for m in members)
    if done:
        log.info("skip: %s already complete (overwrite=true to redo)", ", ".join(str(m) for m in members))
    return done


_warned_unrecorded: set[Path] = set()


def check_same_settings(cfg: DictConfig, member: Path) -> None:
    """Refuse to skip (or add to) a complete member that was made with other settings."""
    if not store.is_complete(member):
        return
    recorded = store.member_settings_of(member)
    if recorded is None:
        if member.parent not in _warned_unrecorded:
            _warned_unrecorded.add(member.parent)
            log.warning("%s was written before members recorded their settings (or its run.json is unreadable): "
                        "this run cannot check that they match, so the member is kept as it is (overwrite=true "
                        "rebuilds it); the same holds for the other such members of %s", member, member.parent)
        return
    ours = member_settings(cfg)
    keys = differences(recorded, ours, str(cfg.method.name))
    if keys:
        raise UserError(f"{member} is a complete member made with other settings: {describe(keys, recorded, ours)}; "
                        "pass overwrite=true to replace it, or train into another store (paths.store_dir=<folder> "
                        "or another experiment)")


def _task_data_and_model_loader(cfg: DictConfig, task: TaskSpec) -> tuple[TaskData, callable]:
    if task.modality == "image":  # FreeTickets' own setting: see ticket_ensembles.vision
        from .vision import load_image_task, load_image_model

        return load_image_task(task, cfg), lambda seed: load_image_model(cfg.model, task, seed)
    tokenizer = load_tokenizer(cfg.model)
    data = load_text_task(task, cfg.data, tokenizer, cfg.trainer.max_length)
    return data, lambda seed: load_model(cfg.model, task, seed)


def _member_logger(cfg: DictConfig, task: TaskSpec, method, members: list[Path]) -> RunLogger:
    """One W&B run per member still to build (logger=wandb), else a logger that costs nothing."""
    if not wandb_on(cfg.logger):
        return RunLogger()
    todo = [key for key, path in zip(method.member_keys(), members) if cfg.overwrite or not store.is_complete(path)]
    return RunLogger(lambda seed, ticket, built_by: _wandb_run(cfg, task, method.store_name, seed, ticket, built_by),
                     todo, cfg.logger.eval_every_steps)


def _wandb_run(cfg: DictConfig, task: TaskSpec, method_name: str, seed: int, ticket: int | None,
               built_by: int | None):
    """The run of one member: ``<method>/seed_<s>[_ticket_<t>]`` in the group evaluation shares."""
    member = {"method": method_name, "seed": seed, "ticket": ticket, "phase": "train", "built_by": built_by}
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) | {"seed": seed, "member": member}
    tags = [method_name, f"seed_{seed}", "train"] + ([] if ticket is None else [f"ticket_{ticket}"])
    tags += [] if built_by is None else ["predecessor"]  # built inside the run of seed built_by (active_lt)
    group = wandb_group(cfg.logger, cfg.experiment_name, task.name, store.model_folder(cfg.model))
    name = f"{method_name}/{store.member_name(seed, ticket)}"
    return init_wandb(cfg.logger, job_type="train", group=group, name=name, config=config, tags=tuple(tags),
                      dir=cfg.paths.log_dir)


def check_environment() -> None:
    """Quiet third-party chatter that is not news to a user of this suite."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    datasets.disable_progress_bars()  # our own bars show each member and the sweep
    transformers.utils.logging.disable_progress_bar()


__all__ = ["train", "UserError"]
