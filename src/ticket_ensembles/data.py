"""GLUE data: the hub (``nyu-mll/glue``) or a local ``glue_data/<TASK>/`` TSV folder.

Tokenised with ``datasets.map(batched=True)``; padding is dynamic, per batch.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from datasets import Dataset, DatasetDict

from .errors import UserError
from .tasks import TaskSpec, TsvLayout


@dataclass
class TaskData:
    """What training needs: the train set, the eval sets (dev-file order) and a collate fn."""

    train: Any
    evals: dict[str, Any]
    collate_fn: Callable | None
    ood: tuple[str, Any] | None = None  # (name, set) named by data.ood; image tasks only
    validation: Any = None  # held out of train by data.validation_fraction; image tasks only

    def labels(self, split: str) -> np.ndarray:
        return np.asarray(self.evals[split]["labels"])


def load_raw_glue(task: TaskSpec, glue_dir: str | None, hub_id: str) -> DatasetDict:
    """Untokenised splits ``train`` + the task's eval splits, columns text_keys + ``label``."""
    if glue_dir:
        return load_glue_dir(task, Path(glue_dir))
    return load_glue_hub(task, hub_id)


def load_glue_hub(task: TaskSpec, hub_id: str) -> DatasetDict:
    """The real hub code path (``load_dataset(hub_id, task)``); a local copy of the repo works too."""
    from datasets import load_dataset

    try:
        ds = load_dataset(hub_id, task.name)
    except Exception as e:
        raise UserError(
            f"could not load GLUE task {task.name!r} from {hub_id!r} ({type(e).__name__}): "
            "connect to the Hugging Face hub, or set GLUE_DIR / data.glue_dir to a local glue_data/ folder"
        ) from None
    keep = [*task.text_keys, "label"]
    out = DatasetDict()
    for split in ("train", *task.eval_splits):
        if split not in ds:
            raise UserError(f"{hub_id!r} config {task.name!r} has no split {split!r}: point data.hub_id at a GLUE copy")
        out[split] = ds[split].select_columns(keep)
        _check_labels(task, np.asarray(out[split]["label"]), f"{hub_id}:{task.name}/{split}")
    return out


def load_glue_dir(task: TaskSpec, glue_dir: Path) -> DatasetDict:
    if task.tsv is None:
        raise UserError(f"task {task.name!r} has no GLUE TSV layout: unset data.glue_dir for it")
    folder = glue_dir / task.tsv.folder
    files = {"train": task.tsv.train_file, **task.tsv.eval_files}
    out = DatasetDict()
    for split, name in files.items():
        path = folder / name
        if not path.is_file():
            raise UserError(
                f"GLUE file {path} not found: data.glue_dir (GLUE_DIR) must hold the standard layout "
                f"glue_data/{task.tsv.folder}/{name} (as made by download_glue_data.py)"
            )
        try:
            columns = read_glue_tsv(path, task)
        except UnicodeDecodeError as e:
            raise UserError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): re-download the file") from None
        out[split] = Dataset.from_dict(columns)
    return out


def read_glue_tsv(path: Path, task: TaskSpec) -> dict[str, list]:
    """Read one GLUE TSV exactly: UTF-8 BOM, no quoting (stray quotes are text), headerless CoLA."""
    layout: TsvLayout = task.tsv
    needed = max(*layout.text_columns, layout.label_column if layout.label_column >= 0 else 0) + 1
    texts: list[list[str]] = [[] for _ in layout.text_columns]
    labels: list = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for line_no, row in enumerate(rows, start=1):
            if line_no == 1 and layout.has_header:
                continue
            if len(row) < needed:
                raise UserError(f"{path}:{line_no}: expected at least {needed} tab-separated columns, found {len(row)}: fix or re-download the file")
            for out, col in zip(texts, layout.text_columns):
                out.append(row[col])
            labels.append(_parse_label(task, row[layout.label_column], path, line_no))
    columns: dict[str, list] = dict(zip(task.text_keys, texts))
    columns["label"] = labels
    return columns


def _parse_label(task: TaskSpec, raw: str, path: Path, line_no: int):
    raw = raw.strip()
    names = task.tsv.label_names
    try:
        if task.is_regression:
            value = float(raw)
        elif names is not None:
            value = names.index(raw)
        else:
            value = int(raw)
    except ValueError:
        expect = "a number" if task.is_regression else (f"one of {', '.join(names)}" if names else "an integer class id")
        raise UserError(f"{path}:{line_no}: label {raw!r} is not {expect}: fix the row or the task choice") from None
    _check_labels(task, np.asarray([value]), f"{path}:{line_no}")
    return value


def _check_labels(task: TaskSpec, labels: np.ndarray, where: str) -> None:
    if task.is_regression:
        bad = ~np.isfinite(labels.astype(float))
    else:
        bad = (labels < 0) | (labels >= task.num_labels)
    if bad.any():
        value = labels[np.argmax(bad)].item()
        raise UserError(f"{where}: label {value!r} is outside task {task.name!r}'s range "
                        f"({'finite scores' if task.is_regression else f'0..{task.num_labels - 1}'}): check the data matches the task")


def bagging_subset(n: int, ratio: float, seed: int) -> np.ndarray:
    """Indices of a random ``ratio`` share of ``n`` rows, drawn without replacement from the seed."""
    if not 0 < ratio <= 1:
        raise UserError(f"method.subset_ratio={ratio} must be in (0, 1]")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max(1, round(ratio * n)), replace=False))


def tokenize_glue(raw: DatasetDict, task: TaskSpec, tokenizer, max_length: int) -> DatasetDict:
    """Tokenise every split with ``map(batched=True)``; padding is left to the collator."""

    def encode(batch):
        texts = [batch[k] for k in task.text_keys]
        enc = tokenizer(*texts, truncation=True, max_length=max_length)
        enc["labels"] = batch["label"]
        return enc

    remove = [*task.text_keys, "label"]
    return raw.map(encode, batched=True, remove_columns=remove, desc=None, load_from_cache_file=False)


def example_lengths(ds) -> list[int] | None:
    """Tokens per row, for batching by length; None for a set without ``input_ids`` (images)."""
    if "input_ids" not in (getattr(ds, "column_names", None) or ()):
        return None
    return [len(ids) for ids in ds.with_format(None)["input_ids"]]


def limit(ds, n: int | None):
    """The first ``n`` rows (``data.max_*_samples`` for small runs), in file order."""
    return ds if n is None or n >= len(ds) else ds.select(range(n))


def load_text_task(task: TaskSpec, data_cfg, tokenizer, max_length: int) -> TaskData:
    from transformers import DataCollatorWithPadding

    if data_cfg.get("ood"):  # neither paper defines a text OoD set (docs/freetickets.md, GLUE setting)
        raise UserError(f"data.ood={data_cfg.ood!r} is supported for image tasks only: unset it for {task.name}")
    if data_cfg.get("validation_fraction"):
        raise UserError(f"data.validation_fraction={data_cfg.validation_fraction} is supported for image tasks "
                        f"only: unset it for {task.name}")
    raw = load_raw_glue(task, data_cfg.glue_dir, data_cfg.hub_id)
    raw["train"] = limit(raw["train"], data_cfg.max_train_samples)
    for split in task.eval_splits:
        raw[split] = limit(raw[split], data_cfg.max_eval_samples)
    for split in ("train", *task.eval_splits):
        if len(raw[split]) == 0:
            raise UserError(f"{task.name} {split} has no rows (an empty file, or data.max_train_samples / "
                            "data.max_eval_samples at 0): fix the file or the setting")
    tok = tokenize_glue(raw, task, tokenizer, max_length)
    tok.set_format("torch")
    if task.is_regression:
        tok = tok.cast_column("labels", _float_feature())
        tok.set_format("torch")
    return TaskData(train=tok["train"], evals={s: tok[s] for s in task.eval_splits},
                    collate_fn=DataCollatorWithPadding(tokenizer))


def _float_feature():
    from datasets import Value

    return Value("float32")
