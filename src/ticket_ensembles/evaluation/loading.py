"""Read one task/model's members from the store: outputs, a label fingerprint, groups.

Everything evaluation knows comes from here, and here every input a user can get wrong
(an empty store, an unknown method, members predicted on different data, a damaged
file) stops with one sentence.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import store
from ..tasks import TaskSpec, predictions_filename
from .costs import COST_COLUMNS, member_cost
from .errors import EvaluationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    """Members ensembled together: a seed group, or the tickets of one EDST run."""

    name: str
    members: tuple[int, ...]  # indices into MethodData.members
    missing: tuple[int, ...] = ()  # the group's seeds absent from the store
    excluded: tuple[str, ...] = ()  # members left out as degenerate (ensemble.exclude_degenerate)


@dataclass
class MethodData:
    name: str
    members: list[str]  # member folder names, sorted by (seed, ticket)
    folders: list[Path]
    outputs: dict[str, np.ndarray]  # split -> logits [M, N, C] (regression: scores [M, N])
    groups: list[Group] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # members in no group
    # [M, 2]: training and inference FLOPs relative to one dense model (COST_COLUMNS; costs.py)
    costs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    ood: dict[str, np.ndarray] = field(default_factory=dict)  # OoD set -> logits [M, N_ood, C]
    excluded: list[str] = field(default_factory=list)  # members left out of every table (degenerate)
    facts: list[dict] = field(default_factory=list)  # each member's run.json ({} when it has none)

    @property
    def per_run_tickets(self) -> bool:
        """EDST: several members per run, each run's tickets ensembled together."""
        return any(store.parse_member_name(m)[1] is not None for m in self.members)


@dataclass
class StoreData:
    task: TaskSpec
    model: str
    root: Path  # <store_dir>/<task>/<model>
    labels: dict[str, np.ndarray]  # split -> labels [N], identical for every member
    methods: dict[str, MethodData]


def load_store(store_dir: str | Path, task: TaskSpec, model: str, methods: list[str] | None,
               seed_groups: list[list[int]]) -> StoreData:
    """Read every requested method's members, check they agree on the data, and group them."""
    root = Path(store_dir) / store.safe_name(task.name, "task") / store.safe_name(model, "model")
    found = store.list_members(store_dir, task.name, model)
    selected = select_methods(found, methods, root)
    labels: dict[str, np.ndarray] = {}
    owners: dict[str, str] = {}
    data = {}
    for name in selected:
        folders = list(found[name].values())
        names = list(found[name])
        outputs = {split: _stack_split(task, split, name, names, folders, labels, owners)
                   for split in task.eval_splits}
        method = MethodData(name, names, folders, outputs)
        method.groups, method.ignored = assign_groups(method, seed_groups)
        costs = [member_cost(f) for f in folders]
        method.costs = np.array([[c["train_rel_dense"], c["inference_rel_dense"]] for c in costs])
        method.ood = {} if task.is_regression else load_ood(task, name, names, folders)
        method.facts = [store.read_run_facts(f) or {} for f in folders]
        data[name] = method
    return StoreData(task, model, root, labels, data)


def select_methods(found: dict[str, dict[str, Path]], requested: list[str] | None, root: Path) -> list[str]:
    """The methods to evaluate: the requested ones (each must be present), else all found."""
    if not found:
        elsewhere = sibling_models(root)
        if elsewhere:
            raise EvaluationError(f"no complete members under {root}, but {root.parent} holds members of "
                                  f"{elsewhere}: evaluate those with that override, or train {root.name} members first")
        raise EvaluationError(f"no complete members under {root} (member folders <method>/seed_<s> holding the "
                              f"{store.COMPLETE_MARKER} marker file that train.py writes last): train some first "
                              "(python train.py task=... model=... method=... seed=...) or point paths.store_dir "
                              "at the store")
    if requested is None:
        return list(found)
    unknown = [m for m in requested if m not in found]
    if unknown:
        raise EvaluationError(f"method {unknown[0]!r} has no complete members under {root}: "
                              f"choose from {', '.join(found)} (or set ensemble.methods=null for all)")
    return list(dict.fromkeys(requested))


_LAYERS = re.compile(r"^(.*)_L(\d+)$")


def sibling_models(root: Path) -> str:
    """The other model folders of ``root``'s task that hold members, each with the override that selects
    it (``minilm_l6_L1 (model.num_layers=1)``); "" when there are none."""
    store_dir, task = root.parent.parent, root.parent.name
    if not root.parent.is_dir():
        return ""
    ours = _LAYERS.match(root.name)
    base = ours.group(1) if ours else root.name
    out = []
    for folder in sorted(p for p in root.parent.iterdir() if p.is_dir() and p.name != root.name):
        if not store.list_members(store_dir, task, folder.name):
            continue
        m = _LAYERS.match(folder.name)
        name, layers = (m.group(1), m.group(2)) if m else (folder.name, None)
        override = [] if name == base else [f"model={name}"]
        if layers is not None:
            override.append(f"model.num_layers={layers}")
        elif ours:
            override.append("model.num_layers=null")
        out.append(f"{folder.name} ({' '.join(override)})")
    return ", ".join(out)


def fingerprint(labels: np.ndarray) -> str:
    """A short hash of the labels' values and order (members must share it to be ensembled)."""
    canonical = np.ascontiguousarray(labels, dtype=np.float64)
    return hashlib.sha256(canonical.tobytes()).hexdigest()[:16]


def _stack_split(task: TaskSpec, split: str, method: str, names: list[str], folders: list[Path],
                 labels: dict[str, np.ndarray], owners: dict[str, str]) -> np.ndarray:
    """Logits of all members of one method for one split, as one array; checks the labels."""
    filename = predictions_filename(split, task)
    rows = []
    for name, folder in zip(names, folders):
        logits, member_labels = store.read_predictions(folder / filename)
        rows.append(_check_shape(task, logits, folder / filename))
        who = f"{method}/{name}"
        if split not in labels:
            labels[split], owners[split] = _check_labels(task, member_labels, folder / filename), who
        elif fingerprint(member_labels) != fingerprint(labels[split]):
            n, n_ref = len(member_labels), len(labels[split])
            how = f"{n} examples vs {n_ref}" if n != n_ref else f"same {n} examples, other labels or order"
            raise EvaluationError(
                f"{who} was predicted on different {split} data than {owners[split]} ({how}): "
                "re-train the odd member with the current data, or move it out of the store")
    return np.stack(rows).astype(np.float64)


def load_ood(task: TaskSpec, method: str, names: list[str], folders: list[Path]) -> dict[str, np.ndarray]:
    """Logits [M, N_ood, C] of every OoD set that all of a method's members scored (ood_<set>.npz)."""
    found = [{p.name[len("ood_"):-len(".npz")] for p in folder.glob("ood_*.npz")} for folder in folders]
    shared = set.intersection(*found) if found else set()
    partial = sorted(set.union(*found) - shared) if found else []
    if partial:
        log.warning("%s: OoD sets %s are missing from some members, so not scored", method, ", ".join(partial))
    out = {}
    for ood in sorted(shared):
        rows = [_check_shape(task, store.read_predictions(f / f"ood_{ood}.npz")[0], f / f"ood_{ood}.npz")
                for f in folders]
        if len({len(r) for r in rows}) > 1:
            sizes = ", ".join(f"{n}: {len(r)}" for n, r in zip(names, rows))
            raise EvaluationError(f"members of {method} scored OoD set {ood!r} on different numbers of examples "
                                  f"({sizes}): re-train the odd members with the current data.ood")
        out[ood] = np.stack(rows).astype(np.float64)
    return out


def _check_labels(task: TaskSpec, labels: np.ndarray, path: Path) -> np.ndarray:
    """Labels the task's metrics can score: classes 0..C-1 (GLUE test files hold -1), finite scores."""
    labels = np.asarray(labels)
    if task.is_regression:
        ok = np.issubdtype(labels.dtype, np.number) and bool(np.isfinite(labels).all())
        if not ok:
            raise EvaluationError(f"{path} holds labels that are not finite numbers, which task {task.name} "
                                  "cannot score: rebuild the member from a labeled split, or move it out of the store")
        return labels
    valid = np.issubdtype(labels.dtype, np.number) and np.isfinite(labels).all() and (labels == np.round(labels)).all()
    bad = labels[~np.isin(labels, np.arange(task.num_labels))] if valid else labels[:1]
    if len(bad):
        raise EvaluationError(f"{path} holds label {bad.tolist()[0]!r}, outside task {task.name}'s classes "
                              f"0..{task.num_labels - 1} (-1 marks an unlabeled GLUE test file): rebuild the member "
                              "from a labeled split, or move it out of the store")
    return labels.astype(np.int64)


def _check_shape(task: TaskSpec, logits: np.ndarray, path: Path) -> np.ndarray:
    if task.is_regression and logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    expected = "[N]" if task.is_regression else f"[N, {task.num_labels}]"
    ok = logits.ndim == 1 if task.is_regression else (logits.ndim == 2 and logits.shape[1] == task.num_labels)
    if not ok:
        raise EvaluationError(f"{path} holds logits of shape {list(logits.shape)} but task {task.name} "
                              f"needs {expected}: it belongs to another task; move it out of the store")
    return logits


def assign_groups(method: MethodData, seed_groups: list[list[int]]) -> tuple[list[Group], list[str]]:
    """Seed groups from the config; for EDST members (several tickets per run) one group per run."""
    keys = [store.parse_member_name(m) for m in method.members]
    if method.per_run_tickets:
        if any(t is None for _, t in keys):
            raise EvaluationError(f"method {method.name} mixes one-member runs (seed_<s>) with EDST tickets "
                                  "(seed_<s>_ticket_<t>): store them under different method folders")
        runs = sorted({s for s, _ in keys})
        return [Group(f"seed_{s}", tuple(i for i, (s2, _) in enumerate(keys) if s2 == s)) for s in runs], []
    seeds = [s for s, _ in keys]
    groups = []
    for g, wanted in enumerate(seed_groups):
        members = tuple(i for i, s in enumerate(seeds) if s in set(wanted))
        missing = tuple(s for s in wanted if s not in set(seeds))
        groups.append(Group(f"group{g}", members, missing))
    in_groups = {s for g in seed_groups for s in g}
    ignored = [m for m, s in zip(method.members, seeds) if s not in in_groups]
    if not any(g.members for g in groups):
        raise EvaluationError(f"none of method {method.name}'s seeds ({_span(seeds)}) is in ensemble.groups "
                              f"({seed_groups}): set ensemble.groups to the seeds you trained")
    return groups, ignored


def _group_cost(method: MethodData, group: Group) -> dict[str, float]:
    """FLOPs of all a group's members (an EDST group is one run), relative to one dense model."""
    costs = method.costs[list(group.members)]
    return {col: float(costs[:, i].sum()) if len(costs) else float("nan") for i, col in enumerate(COST_COLUMNS)}


def _span(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds[:8]) + (", ..." if len(seeds) > 8 else "")


def check_sizes(data: StoreData, max_size: int) -> dict[str, int]:
    """The largest k per method; refuses a k larger than a seed group's members.

    EDST runs hold a fixed number of tickets (M), so their k stops at M instead.
    """
    if max_size < 1:
        raise EvaluationError(f"ensemble.max_size={max_size}: it must be at least 1")
    sizes = {}
    for method in data.methods.values():
        groups = [g for g in method.groups if g.members]
        smallest = min(groups, key=lambda g: len(g.members))
        if method.per_run_tickets:
            sizes[method.name] = min(max_size, len(smallest.members))
        elif len(smallest.members) < max_size:
            missing = f" (missing seeds {_span(list(smallest.missing))})" if smallest.missing else ""
            if smallest.excluded:
                raise EvaluationError(
                    f"ensemble.max_size={max_size} but method {method.name} has only {len(smallest.members)} "
                    f"member(s) in {smallest.name} once ensemble.exclude_degenerate=true leaves out "
                    f"{' '.join(smallest.excluded)}{missing}: lower ensemble.max_size, train more seeds, or set "
                    "ensemble.exclude_degenerate=false")
            raise EvaluationError(
                f"ensemble.max_size={max_size} but method {method.name} has only {len(smallest.members)} "
                f"member(s) in {smallest.name}{missing}: lower ensemble.max_size or train the missing seeds")
        else:
            sizes[method.name] = max_size
    return sizes


def group_rows(methods: list[MethodData]) -> list[dict]:
    """groups.csv: one row per method and group: members ensembled, seeds missing, members left out as
    degenerate, their total cost; and the members in no group."""
    rows = []
    for method in methods:
        for g in method.groups:
            if g.missing:
                log.warning("%s %s: missing seeds %s", method.name, g.name, _span(list(g.missing)))
            rows.append({"method": method.name, "group": g.name, "n_members": len(g.members),
                         "members": " ".join(method.members[i] for i in g.members),
                         "missing_seeds": " ".join(map(str, g.missing)), "excluded": " ".join(g.excluded),
                         **_group_cost(method, g)})
        if method.ignored:
            log.warning("%s: members in no ensemble group, not evaluated: %s", method.name, " ".join(method.ignored))
            rows.append({"method": method.name, "group": "(none)", "n_members": len(method.ignored),
                         "members": " ".join(method.ignored), "missing_seeds": "", "excluded": ""})
    return rows
