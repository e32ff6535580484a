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
class ImageSource:
    """Where an image task's pictures come from and how they are prepared (FreeTickets)."""

    hub_id: str | None  # a `datasets` hub id; None: scikit-learn's bundled 8x8 digits
    channels: int
    size: int  # height = width in pixels
    mean: tuple[float, ...]  # per-channel normalisation of [0, 1] pixels
    std: tuple[float, ...]
    crop_padding: int  # training augmentation: random crop after zero padding
    hflip: bool  # training augmentation: random horizontal flip
    image_key: str = "img"
    label_key: str = "label"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    text_keys: tuple[str, ...]
    num_labels: int  # 1 means regression
    metrics: tuple[str, ...]  # the first one is the task's headline metric
    eval_splits: tuple[str, ...]
    tsv: TsvLayout | None = None  # None: not a GLUE TSV task (e.g. an image task)
    modality: str = "text"  # "text" (GLUE) or "image" (FreeTickets' own setting)
    image: ImageSource | None = None  # image tasks only

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
        # FreeTickets' image setting: the hub's test split is the eval split (as the paper).
        TaskSpec("cifar10", (), 10, ("accuracy",), ("test",), modality="image",
                 image=ImageSource("uoft-cs/cifar10", 3, 32, (0.4914, 0.4822, 0.4465),
                                   (0.2470, 0.2435, 0.2616), crop_padding=4, hflip=True)),
        TaskSpec("cifar100", (), 100, ("accuracy",), ("test",), modality="image",
                 image=ImageSource("uoft-cs/cifar100", 3, 32, (0.5071, 0.4865, 0.4409),
                                   (0.2673, 0.2564, 0.2762), crop_padding=4, hflip=True,
                                   label_key="fine_label")),
        # Offline stand-in: the last 360 of sklearn's 1,797 digits are "test"; no flip (a
        # mirrored digit is another symbol); mean/std of the first 1,437 (train) pixels / 16.
        TaskSpec("digits", (), 10, ("accuracy",), ("test",), modality="image",
                 image=ImageSource(None, 1, 8, (0.3054,), (0.3755,), crop_padding=1, hflip=False)),
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
