"""What every method shares: θ_s, one finetune, and writing a member into the store."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig, OmegaConf

from .. import store
from ..data import TaskData
from ..loggers import RunLogger
from ..scoring import member_metrics
from ..tasks import TaskSpec, predictions_filename
from ..trainer import FinetuneResult, count_parameters, finetune, predict


@dataclass
class RunContext:
    """Everything a method needs for one run (one seed)."""

    cfg: DictConfig
    task: TaskSpec
    data: TaskData
    logger: RunLogger
    load_model: Callable[[int], torch.nn.Module]  # seed -> θ_s
    method_dir: Path
    started: float = field(default_factory=time.perf_counter)
    optimizer_steps: int = 0

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    def finetune(self, model, *, train_ds=None, hooks: Any = None, epochs: float | None = None,
                 desc: str = "finetune") -> FinetuneResult:
        """One finetune with the trainer config; counts steps for the member's run facts."""
        result = finetune(model, self.data.train if train_ds is None else train_ds, self.cfg.trainer,
                          self.seed, collate_fn=self.data.collate_fn, hooks=hooks, epochs=epochs,
                          logger=self.logger, desc=desc, on_epoch_end=self._dev_logger(model, desc))
        self.optimizer_steps += result.steps
        return result

    def _dev_logger(self, model, desc: str) -> Callable[[int], None] | None:
        if self.logger.run is None:
            return None  # dev passes between epochs cost time; only pay when someone looks

        def log_dev(epoch: int) -> None:
            metrics = self.evaluate(model)
            self.logger.log({f"{desc}/dev_{k}": v for k, v in metrics.items()} | {f"{desc}/epoch": epoch})

        return log_dev

    def predict_all(self, model) -> dict[str, Any]:
        return {split: predict(model, ds, self.cfg.trainer, self.data.collate_fn)
                for split, ds in self.data.evals.items()}

    def evaluate(self, model) -> dict[str, float]:
        out = {}
        for split, logits in self.predict_all(model).items():
            prefix = "" if split == self.task.eval_splits[0] else f"{split}/"
            out |= {prefix + k: v for k, v in member_metrics(self.task, logits, self.data.labels(split)).items()}
        return out

    def write_member(self, model, *, ticket: int | None = None, extra: dict | None = None,
                     extra_metrics: dict | None = None,
                     write_files: Callable[[Path], None] | None = None) -> Path:
        """Predict every eval split and write one complete member into the store, atomically.

        ``extra`` joins the run facts (run.json), ``extra_metrics`` the metrics (e.g. sparsity)."""
        final = self.method_dir / store.member_name(self.seed, ticket)
        predictions = self.predict_all(model)
        metrics = {}
        for split, logits in predictions.items():
            prefix = "" if split == self.task.eval_splits[0] else f"{split}/"
            metrics |= {prefix + k: v for k, v in member_metrics(self.task, logits, self.data.labels(split)).items()}
        metrics |= extra_metrics or {}
        facts = {"seed": self.seed, "ticket": ticket, "wall_time_s": round(time.perf_counter() - self.started, 3),
                 "optimizer_steps": self.optimizer_steps, "train_examples": len(self.data.train),
                 **count_parameters(model), **(extra or {})}
        with store.building_member(final, overwrite=bool(self.cfg.overwrite)) as tmp:
            for split, logits in predictions.items():
                store.write_predictions(tmp, predictions_filename(split, self.task), logits, self.data.labels(split))
            if write_files is not None:
                write_files(tmp)
            store.write_json(tmp / "metrics.json", metrics)
            store.write_json(tmp / "run.json", facts)
            (tmp / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg, resolve=True))
        self.logger.summary({f"dev/{k}": v for k, v in metrics.items()} | facts)
        return final


class Method:
    """A strategy that produces ensemble members for one seed."""

    name: str = "method"

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    @property
    def store_name(self) -> str:
        """The method's folder in the store (variants of one method may differ)."""
        return self.name

    def member_keys(self) -> list[tuple[int, int | None]]:
        """The (seed, ticket) members one run of this seed produces."""
        return [(int(self.cfg.seed), None)]

    def build(self, ctx: RunContext) -> None:
        raise NotImplementedError
