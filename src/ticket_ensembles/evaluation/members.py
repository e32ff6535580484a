"""What evaluation knows about each member besides its predictions, and the checks built on it.

- **Settings.** One method's members must share the settings that shaped them (run.json
  ``settings``, fingerprint.py): members that differ in anything but the seed are refused unless
  ``ensemble.allow_mixed_settings=true``. Members written before members recorded their
  settings are read as they are, with one warning.
- **Hardware.** Device name, precision and TF32 of every member go to members.csv; a method whose
  ensembles mix them gets one warning line.
- **Members that learned nothing** (degenerate): a classification member whose argmax is one class
  for at least ``ensemble.degenerate_share`` of an eval split's rows, or any member whose headline
  score is no more than ``ensemble.degenerate_margin`` points above the best constant predictor's.
  ``ensemble.exclude_degenerate=true`` leaves them out of every table.
"""
from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pandas as pd

from .. import store
from ..fingerprint import differences
from ..tasks import TaskSpec
from .errors import EvaluationError
from .loading import MethodData, StoreData
from .metrics import classification_scores, regression_scores
from .paper import method_order

log = logging.getLogger(__name__)

HARDWARE = ("device_name", "precision", "tf32")  # mixed within one method's ensembles: a warning


def evaluated(method: MethodData) -> list[int]:
    """Indices of the members that some ensemble group holds."""
    return sorted({i for g in method.groups for i in g.members})


def _names(names: list[str], limit: int = 6) -> str:
    return " ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --- settings -------------------------------------------------------------------------------------------------

def check_settings(data: StoreData, allow_mixed: bool) -> None:
    """Refuse (or, when allowed, warn about) a method whose grouped members differ in more than the seed."""
    unrecorded = []
    for method in data.methods.values():
        recorded = []
        for i in evaluated(method):
            settings = store.member_settings_of(method.folders[i])
            if settings is None:
                unrecorded.append(f"{method.name}/{method.members[i]}")
            else:
                recorded.append((method.members[i], settings))
        message = mixed_settings(method.name, recorded)
        if message is None:
            continue
        if not allow_mixed:
            raise EvaluationError(f"{message}: one method's members must share their settings; retrain the odd "
                                  "members like the others (overwrite=true), move them to another store, or set "
                                  "ensemble.allow_mixed_settings=true to ensemble them anyway")
        log.warning("%s; ensembled anyway (ensemble.allow_mixed_settings=true)", message)
    if unrecorded:
        log.warning("%d member(s) were written before members recorded their settings, so whether they share "
                    "their method's settings is not checked: %s", len(unrecorded), _names(unrecorded))


def mixed_settings(method: str, recorded: list[tuple[str, dict]]) -> str | None:
    """``"random_lt: seed_3 differs from seed_0 in trainer.lr (seed_0: 2e-05, seed_3: 0.001)"``, or None
    when every member has the same settings. The reference is the largest set of alike members."""
    def diff(a: dict, b: dict) -> list[str]:
        return differences(a, b, str(a.get("method.name", b.get("method.name", method))))

    alike: list[list[tuple[str, dict]]] = []
    for member in recorded:
        for cluster in alike:
            if not diff(cluster[0][1], member[1]):
                cluster.append(member)
                break
        else:
            alike.append([member])
    if len(alike) < 2:
        return None
    reference = max(alike, key=len)  # the first of the largest
    ref_name, ref = reference[0]
    odd = [m for cluster in alike if cluster is not reference for m in cluster]
    found: dict[str, tuple[str, dict]] = {}  # key -> the first odd member that differs in it
    for name, settings in odd:
        for key in diff(ref, settings):
            found.setdefault(key, (name, settings))
    keys = sorted(found)
    shown = ", ".join(f"{k} ({ref_name}: {_value(ref, k)}, {found[k][0]}: {_value(found[k][1], k)})"
                      for k in keys[:4])
    more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
    verb = "differs" if len(odd) == 1 else "differ"
    return f"{method}: {_names([n for n, _ in odd])} {verb} from {ref_name} in {shown}{more}"


def _value(settings: dict, key: str) -> str:
    return repr(settings[key]) if key in settings else "unset"


# --- hardware -------------------------------------------------------------------------------------------------

def warn_mixed_hardware(data: StoreData) -> None:
    """One warning per method whose evaluated members ran on different devices, precisions or TF32 settings."""
    for method in data.methods.values():
        parts = []
        for key in HARDWARE:
            values: dict[str, list[str]] = {}
            for i in evaluated(method):
                value = method.facts[i].get(key)
                if value is not None:  # members written before run.json recorded it
                    values.setdefault(str(value), []).append(method.members[i])
            if len(values) > 1:
                parts.append(f"{key} " + " vs ".join(f"{v} ({_names(n, 3)})" for v, n in values.items()))
        if parts:
            log.warning("%s: its ensembles mix %s: their scores may differ by hardware as well as by seed; train "
                        "one method's members on one kind for a clean comparison", method.name, "; ".join(parts))


# --- members that learned nothing -----------------------------------------------------------------------------

def best_constant(task: TaskSpec, labels: np.ndarray) -> tuple[str, float]:
    """(what, headline score) of the best constant predictor on these labels. A constant's correlation
    (STS-B's Pearson) is undefined: it counts as 0, no correlation."""
    if task.is_regression:
        return "a constant score", 0.0
    metric = task.main_metric
    always = np.repeat(np.arange(task.num_labels)[:, None], len(labels), axis=1)  # [C, N]
    scores = classification_scores(always, None, labels, (metric,), task.num_labels)[metric]
    best = int(np.argmax(scores))
    return f"always predicting class {best}", float(scores[best])


def single_scores(data: StoreData, share: float, margin: float) -> pd.DataFrame:
    """One row per member and eval split: its headline score, the share of its most predicted class
    (classification), and ``degenerate``, why it learned nothing ("" when it did)."""
    task, metric = data.task, data.task.main_metric
    several = len(data.labels) > 1
    points = f"{margin:g} point" + ("" if margin == 1 else "s")
    rows = []
    for split, labels in data.labels.items():
        what, constant = best_constant(task, labels)
        for method in data.methods.values():
            out = method.outputs[split]
            if task.is_regression:
                scores = regression_scores(out, labels, (metric,))[metric]
                tops = [(None, math.nan)] * len(out)
            else:
                pred = out.argmax(-1)
                scores = classification_scores(pred, None, labels, (metric,), task.num_labels)[metric]
                counts = [np.bincount(p, minlength=task.num_labels) for p in pred]
                tops = [(int(c.argmax()), float(c.max() / len(labels))) for c in counts]
            where = f" on {split}" if several else ""
            for name, score, (top, top_share) in zip(method.members, scores, tops):
                why = []
                if top is not None and top_share >= share:
                    why.append(f"predicts class {top} for {100 * top_share:.1f} % of {split} rows")
                if not np.isfinite(score):
                    why.append(f"{metric} undefined{where} (constant predictions)")
                elif score <= constant + margin:
                    shown = round(float(score), 2) + 0.0  # never "-0.00"
                    why.append(f"{metric} {shown:.2f}{where} is not more than {points} above {what} ({constant:.2f})")
                rows.append({"method": method.name, "member": name, "split": split, metric: float(score),
                             "top_class_share": top_share, "degenerate": "; ".join(why)})
    return pd.DataFrame(rows)


def degenerate(singles: pd.DataFrame, data: StoreData) -> pd.DataFrame:
    """The grouped members that learned nothing: method, member, reason (every split's reasons joined)."""
    grouped = {(m.name, m.members[i]) for m in data.methods.values() for i in evaluated(m)}
    bad = singles[singles.degenerate != ""]
    bad = bad[np.array([(m, n) in grouped for m, n in zip(bad.method, bad.member)], dtype=bool)]
    out = bad.groupby(["method", "member"], sort=False).degenerate.agg("; ".join).reset_index()
    order = method_order(list(dict.fromkeys(out.method)))
    out = out.sort_values("method", key=lambda m: m.map(order.index), kind="stable", ignore_index=True)
    return out.rename(columns={"degenerate": "reason"})


def exclude(data: StoreData, flagged: pd.DataFrame) -> list[str]:
    """Leave the flagged members out of their groups (ensemble.exclude_degenerate=true); a method left
    with no member is dropped from the tables. Returns the dropped methods."""
    dropped = []
    for method in list(data.methods.values()):
        bad = set(flagged.member[flagged.method == method.name])
        if not bad:
            continue
        method.excluded = [n for n in method.members if n in bad]
        method.groups = [dataclasses.replace(g, members=tuple(i for i in g.members if method.members[i] not in bad),
                                             excluded=tuple(method.members[i] for i in g.members
                                                            if method.members[i] in bad))
                         for g in method.groups]
        if not any(g.members for g in method.groups):
            dropped.append(method.name)
            del data.methods[method.name]
    if not data.methods:
        who = _names(list(flagged.method + "/" + flagged.member))
        raise EvaluationError(f"every evaluated member learned nothing ({who}), so ensemble.exclude_degenerate=true "
                              "leaves nothing to evaluate: set it to false to see their tables, or train members that "
                              "learn (docs/evaluation.md, checks on the members)")
    if dropped:
        log.warning("ensemble.exclude_degenerate=true leaves no member of %s: not in the tables", ", ".join(dropped))
    return dropped


def below_floor(members: pd.DataFrame, metric: str, floor: float | None) -> pd.DataFrame:
    """Mark members.csv's rows whose headline score is below ensemble.min_score (a ``below_min_score``
    column, after ``degenerate``); returns the evaluated ones: method, member and score. No floor: nothing."""
    if floor is None:
        return pd.DataFrame(columns=["method", "member", metric])
    if not np.isfinite(floor):
        raise EvaluationError(f"ensemble.min_score={floor} must be a finite score in the task's points (e.g. 72.0 "
                              "for MRPC accuracy), or null for no floor")
    below = members[metric] < floor
    members.insert(members.columns.get_loc("degenerate") + 1, "below_min_score", below)
    return members.loc[below & members.evaluated, ["method", "member", metric]].reset_index(drop=True)


# --- members.csv ----------------------------------------------------------------------------------------------

def member_table(methods: list[MethodData], singles: pd.DataFrame, task: TaskSpec, first_split: str) -> pd.DataFrame:
    """members.csv: one row per member: its group, whether it is evaluated, its headline score per split,
    why it learned nothing, where and how it was trained, its settings fingerprint and its cost."""
    metric = task.main_metric
    wide = {}
    for (method, member), part in singles.groupby(["method", "member"], sort=False):
        row = {}
        for r in part.itertuples():
            suffix = "" if r.split == first_split else f"_{r.split}"
            row[metric + suffix] = getattr(r, metric)
            if not task.is_regression:
                row["top_class_share" + suffix] = r.top_class_share
        row["degenerate"] = "; ".join(d for d in part.degenerate if d)
        wide[(method, member)] = row
    rows = []
    for method in methods:
        group_of = {method.members[i]: g.name for g in method.groups for i in g.members}
        group_of |= {name: g.name for g in method.groups for name in g.excluded}
        for i, (name, facts) in enumerate(zip(method.members, method.facts)):
            used = any(i in g.members for g in method.groups)
            rows.append({"method": method.name, "member": name, "group": group_of.get(name, "(none)"),
                         "evaluated": used, **wide.get((method.name, name), {}),
                         "device": facts.get("device"), "device_name": facts.get("device_name"),
                         "precision": facts.get("precision"), "tf32": facts.get("tf32"),
                         "fingerprint": facts.get("fingerprint"),
                         "train_flops_rel_dense": method.costs[i, 0], "inference_flops_rel_dense": method.costs[i, 1]})
    return pd.DataFrame(rows)
