"""What every method shares: θ_s, one finetune, and writing a member into the store."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .. import store
from ..data import TaskData
from ..evaluation.metrics import nll, softmax
from ..loggers import RunLogger
from ..scoring import member_metrics
from ..sparse.flops import examples_in_steps, finetune_examples, flops_report, profile_forward
from ..tasks import TaskSpec, predictions_filename
from ..fingerprint import digest, member_settings
from ..trainer import (FinetuneResult, count_parameters, device_facts, finetune, predict, resolve_device,
                       run_precision)


@dataclass
class RunContext:
    """Everything a method needs for one run (one seed)."""

    cfg: DictConfig
    task: TaskSpec
    data: TaskData
    logger: RunLogger
    model_loader: Callable[[int], torch.nn.Module]  # seed -> θ_s where it loads (the CPU); see load_model
    method_dir: Path
    started: float = field(default_factory=time.perf_counter)
    optimizer_steps: int = 0
    train_examples_seen: int = 0  # over every finetune of this run: the dense training FLOPs

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    @property
    def device(self) -> torch.device:
        return resolve_device(self.cfg.trainer.device)

    def load_model(self, seed: int) -> torch.nn.Module:
        """θ_s, already on the run's device: the one place a method gets its model. Everything made from it
        (masks, the sparse engine, snapshots, coefficient masks, FLOP plans) is made where the model is; a
        move afterwards (a GPU's swaps each parameter's data in place) would leave those behind."""
        return self.model_loader(seed).to(self.device)

    def finetune(self, model, *, train_ds=None, hooks: Any = None, epochs: float | None = None,
                 desc: str = "finetune", on_epoch_end: Callable[[int], None] | None = None,
                 data_generator: torch.Generator | None = None) -> FinetuneResult:
        """One finetune with the trainer config; counts steps and examples for the member's run facts."""
        train_ds = self.data.train if train_ds is None else train_ds
        logger = self._begin_logging(model, desc)
        result = finetune(model, train_ds, self.cfg.trainer, self.seed, collate_fn=self.data.collate_fn,
                          hooks=hooks, epochs=epochs, logger=logger, desc=desc, on_epoch_end=on_epoch_end,
                          data_generator=data_generator)
        if logger is not None:
            logger.end_finetune(result.steps)
        self.optimizer_steps += result.steps
        self.train_examples_seen += examples_in_steps(len(train_ds), self.cfg.trainer.batch_size, result.steps)
        return result

    def _begin_logging(self, model, desc: str) -> RunLogger | None:
        """W&B on: this finetune's train/* and eval/* go to the member's run; off: None, nothing in the loop."""
        if not self.logger.enabled:
            return None
        phase = desc.removeprefix(f"seed {self.seed}").strip() or "finetune"  # methods' descs: "seed <s> <phase>"
        found = re.fullmatch(r"round (\d+)", phase)
        self.logger.begin_finetune(phase, round_no=int(found[1]) if found else None,
                                   log_every=self.cfg.trainer.log_every_steps, batch_size=self.cfg.trainer.batch_size,
                                   evaluate=lambda: self.dev_scores(model))
        return self.logger

    def dev_scores(self, model) -> dict[str, float]:
        """The task's metrics and the loss (NLL; regression: MSE) per eval split, for the dashboard."""
        predictions = self.predict_all(model)  # predict leaves the RNG, and so training's dropout, as it was
        out = self.split_metrics(predictions)
        for split, logits in predictions.items():
            out[self._prefix(split) + "loss"] = dev_loss(self.task, logits, self.data.labels(split))
        return out

    def predict_all(self, model) -> dict[str, Any]:
        return {split: predict(model, ds, self.cfg.trainer, self.data.collate_fn)
                for split, ds in self.data.evals.items()}

    def split_metrics(self, predictions: dict[str, Any]) -> dict[str, float]:
        """The task's metrics per eval split; the first split's keys carry no prefix."""
        out = {}
        for split, logits in predictions.items():
            prefix = self._prefix(split)
            out |= {prefix + k: v for k, v in member_metrics(self.task, logits, self.data.labels(split)).items()}
        return out

    def _prefix(self, split: str) -> str:
        return "" if split == self.task.eval_splits[0] else f"{split}/"

    def example_batch(self, model) -> dict:
        """Up to one training batch, collated as in training (text: padded as the trainer pads)."""
        count = min(len(self.data.train), self.cfg.trainer.batch_size)
        collate = self.data.collate_fn or torch.utils.data.default_collate
        batch = collate([self.data.train[i] for i in range(count)])
        device = next(model.parameters()).device
        return {k: v.to(device) for k, v in batch.items()}

    def dense_flops(self, model) -> dict:
        """Analytic FLOPs (sparse/flops.py) of a member computed densely: every finetune of this
        run, relative to ONE dense finetune of trainer.epochs over the whole training set."""
        profile = profile_forward(model, self.example_batch(model))
        reference = finetune_examples(len(self.data.train), self.cfg.trainer.batch_size, float(self.cfg.trainer.epochs))
        return flops_report(profile, {}, self.train_examples_seen, 0.0, 1, reference)

    def write_member(self, model, *, ticket: int | None = None, extra: dict | None = None,
                     extra_metrics: dict | None = None,
                     write_files: Callable[[Path], None] | None = None) -> Path:
        """Predict every eval split (and the OoD set, if any) and write one complete member, atomically.

        ``extra`` joins the run facts (run.json; without ``flops`` there, dense FLOPs are
        counted), ``extra_metrics`` the metrics (e.g. sparsity)."""
        final = self.method_dir / store.member_name(self.seed, ticket)
        predictions = self.predict_all(model)
        ood = self.data.ood
        ood_logits = None if ood is None else predict(model, ood[1], self.cfg.trainer, self.data.collate_fn)
        metrics = self.split_metrics(predictions) | (extra_metrics or {})
        facts = {"seed": self.seed, "ticket": ticket, "wall_time_s": round(time.perf_counter() - self.started, 3),
                 "optimizer_steps": self.optimizer_steps, "train_examples": len(self.data.train),
                 "precision": run_precision(self.cfg.trainer), **device_facts(self.cfg.trainer),
                 **count_parameters(model), **(extra or {})}
        settings = member_settings(self.cfg)
        facts |= {"settings": settings, "fingerprint": digest(settings)}
        if "flops" not in facts:
            facts["flops"] = self.dense_flops(model)
        with store.building_member(final, overwrite=bool(self.cfg.overwrite)) as tmp:
            for split, logits in predictions.items():
                store.write_predictions(tmp, predictions_filename(split, self.task), logits, self.data.labels(split))
            if ood_logits is not None:
                store.write_predictions(tmp, f"ood_{ood[0]}.npz", ood_logits, ood[1]["labels"])
            if write_files is not None:
                write_files(tmp)
            store.write_json(tmp / "metrics.json", metrics)
            store.write_json(tmp / "run.json", facts)
            (tmp / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
        self.logger.member_done(self.seed, ticket, {f"eval/{k}": v for k, v in metrics.items()} | facts)
        return final


def dev_loss(task: TaskSpec, logits, labels) -> float:
    """The training loss on dev data: cross-entropy (mean NLL), or mean squared error for regression."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    if task.is_regression:
        return float(np.mean((logits.reshape(-1) - labels) ** 2))
    return float(nll(softmax(logits), labels))


class Method:
    """A strategy that produces ensemble members for one seed."""

    name: str = "method"

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    @property
    def store_name(self) -> str:
        """The method's folder in the store: ``method.folder``, else the method's own name."""
        return self.cfg.method.get("folder") or self.default_folder

    @property
    def default_folder(self) -> str:
        """The folder when ``method.folder`` is unset (variants of one method may differ)."""
        return self.name

    def member_keys(self) -> list[tuple[int, int | None]]:
        """The (seed, ticket) members one run of this seed produces."""
        return [(int(self.cfg.seed), None)]

    def build(self, ctx: RunContext) -> None:
        raise NotImplementedError
