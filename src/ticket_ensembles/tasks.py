"""The one table of GLUE task facts (after transformers' run_glue.py `task_to_keys`).

Every other module asks this table; nothing else hard-codes a task fact.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TsvLayout:
    """Where a task's columns sit in the `glue_data/<TASK>/*.tsv` files."""

    folder: str
    text_columns: tuple[int, ...]
    label_column: int
    has_header: bool = True
    train_file: str = "train.tsv"
    # eval split name (as on the hub) -> file name in the folder
    eval_files: dict[str, str] = field(default_factory=dict)
    # string labels in the TSV -> the hub's integer ids (None: labels are numbers already)
    label_names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    text_keys: tuple[str, ...]
    num_labels: int  # 1 means regression
    metrics: tuple[str, ...]  # the first one is the task's headline metric
    eval_splits: tuple[str, ...]
    tsv: TsvLayout | None = None  # None: not a GLUE TSV task (e.g. an image task)
    modality: str = "text"  # "text" (GLUE) or "image" (FreeTickets' own setting)

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


_DEV = {"validation": "dev.tsv"}
_NLI = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("cola", ("sentence",), 2, ("matthews_correlation", "accuracy"), ("validation",),
                 TsvLayout("CoLA", (3,), 1, has_header=False, eval_files=_DEV)),
        TaskSpec("sst2", ("sentence",), 2, ("accuracy",), ("validation",),
                 TsvLayout("SST-2", (0,), 1, eval_files=_DEV)),
        TaskSpec("mrpc", ("sentence1", "sentence2"), 2, ("accuracy", "f1"), ("validation",),
                 TsvLayout("MRPC", (3, 4), 0, eval_files=_DEV)),
        TaskSpec("stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearmanr"), ("validation",),
                 TsvLayout("STS-B", (7, 8), 9, eval_files=_DEV)),
        TaskSpec("qqp", ("question1", "question2"), 2, ("accuracy", "f1"), ("validation",),
                 TsvLayout("QQP", (3, 4), 5, eval_files=_DEV)),
        TaskSpec("mnli", ("premise", "hypothesis"), 3, ("accuracy",),
                 ("validation_matched", "validation_mismatched"),
                 TsvLayout("MNLI", (8, 9), -1,
                           eval_files={"validation_matched": "dev_matched.tsv",
                                       "validation_mismatched": "dev_mismatched.tsv"},
                           label_names=("entailment", "neutral", "contradiction"))),
        TaskSpec("qnli", ("question", "sentence"), 2, ("accuracy",), ("validation",),
                 TsvLayout("QNLI", (1, 2), 3, eval_files=_DEV, label_names=_NLI)),
        TaskSpec("rte", ("sentence1", "sentence2"), 2, ("accuracy",), ("validation",),
                 TsvLayout("RTE", (1, 2), 3, eval_files=_DEV, label_names=_NLI)),
        TaskSpec("wnli", ("sentence1", "sentence2"), 2, ("accuracy",), ("validation",),
                 TsvLayout("WNLI", (1, 2), 3, eval_files=_DEV)),
    ]
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by its config name, with a message listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}") from None


def predictions_filename(split: str, task: TaskSpec) -> str:
    """The store file of one eval split: the first split is `predictions.npz`."""
    return "predictions.npz" if split == task.eval_splits[0] else f"predictions_{split}.npz"
