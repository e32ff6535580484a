"""From the store's arrays to the result tables: combinations, summary, diversity, OoD.

Protocol (METHODS.md, Section 4): for each k, score every k-subset of each group, average
within the group, then over the groups. "single" is the k = 1 row. An ensemble's FLOPs are
the sum of its members' (costs.py), averaged the same way.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from .combine import score_subsets, subset_matrix
from .costs import COST_COLUMNS
from .diversity import group_diversity
from .loading import Group, MethodData, StoreData
from .masks import mask_iou_matrix
from .metrics import CALIBRATION, LOWER_IS_BETTER
from .ood import subset_ood_auroc
from .significance import significantly_better, student_t

KEYS = ["split", "method", "k"]
OOD_KEYS = ["ood", "split", "method", "k"]
OOD_METRICS = ["auroc_msp", "auroc_entropy"]


def metric_names(data: StoreData) -> list[str]:
    """The task's metrics (headline first), then calibration for classification."""
    return list(data.task.metrics) + ([] if data.task.is_regression else list(CALIBRATION))


def combinations_table(data: StoreData, sizes: dict[str, int], combiner: str, ece_bins: int,
                       chunk_elements: int) -> pd.DataFrame:
    """One row per evaluated subset: split, method, group, k, members, and every metric."""
    frames = []
    for split, labels in data.labels.items():
        for method in data.methods.values():
            for group, idx, k, subsets in group_subsets(method, sizes[method.name]):
                scores = score_subsets(method.outputs[split][idx], labels, subsets, data.task, combiner, ece_bins,
                                       chunk_elements)
                names = np.array([method.members[i] for i in idx])
                costs = {col: method.costs[idx, j][subsets].sum(axis=1) for j, col in enumerate(COST_COLUMNS)}
                frame = pd.DataFrame({"split": split, "method": method.name, "group": group.name, "k": k,
                                      "members": [" ".join(row) for row in names[subsets]], **scores, **costs})
                frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def group_subsets(method: MethodData, max_k: int) -> Iterator[tuple[Group, list[int], int, np.ndarray]]:
    """(group, member indices, k, subset matrix) for every non-empty group and k = 1..max_k."""
    for group in method.groups:
        idx = list(group.members)
        for k in range(1, min(max_k, len(idx)) + 1):
            yield group, idx, k, subset_matrix(len(idx), k)


def protocol_mean(frame: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """Mean over each group's subsets, then over groups; a NaN anywhere stays NaN (unknown cost)."""
    def mean(s: pd.Series) -> float:
        return float(np.mean(s.to_numpy(dtype=np.float64)))

    return frame.groupby(keys + ["group"])[columns].agg(mean).groupby(level=keys).agg(mean)


def summary_table(combos: pd.DataFrame, metrics: list[str], compare_to: list[str], alpha: float) -> pd.DataFrame:
    """One row per split x method x k x metric: single, ens. and diff. with t-tests against ``compare_to``."""
    by_group = combos.groupby(KEYS + ["group"])[metrics].mean()
    ens_mean = by_group.groupby(level=KEYS).mean()
    ens_std = combos.groupby(KEYS)[metrics].std(ddof=1)
    n_subsets = combos.groupby(KEYS).size()
    samples = {key: frame for key, frame in combos.groupby(KEYS)}
    costs = protocol_mean(combos, KEYS, list(COST_COLUMNS)) if set(COST_COLUMNS) <= set(combos) else None
    rows = []
    for (split, method, k), means in ens_mean.iterrows():
        singles = samples[(split, method, 1)]
        for metric in metrics:
            row = {"split": split, "method": method, "k": k, "metric": metric,
                   "n_subsets": int(n_subsets[(split, method, k)]),
                   "single_mean": float(ens_mean.loc[(split, method, 1), metric]),
                   "single_std": float(singles[metric].std(ddof=1)),
                   "ens_mean": float(means[metric]), "ens_std": float(ens_std.loc[(split, method, k), metric])}
            row["diff"] = row["ens_mean"] - row["single_mean"]
            mine = samples[(split, method, k)][metric].to_numpy()
            for other in compare_to:
                row[f"p_vs_{other}"], row[f"better_than_{other}"] = _compare(
                    mine, samples.get((split, other, k)), metric, alpha, same=other == method)
            if costs is not None:
                row |= costs.loc[(split, method, k)].to_dict()
            rows.append(row)
    return pd.DataFrame(rows)


def _compare(mine: np.ndarray, theirs: pd.DataFrame | None, metric: str, alpha: float,
             same: bool) -> tuple[float, bool]:
    if theirs is None or same:
        return float("nan"), False
    other = theirs[metric].to_numpy()
    _, p = student_t(mine, other)
    return p, significantly_better(mine, other, p, alpha, metric in LOWER_IS_BETTER)


def ood_table(data: StoreData, sizes: dict[str, int], combiner: str, chunk_elements: int) -> pd.DataFrame:
    """One row per OoD set x method x k: AUROC (%) of MSP and of entropy (mean and std over subsets),
    the in-distribution side being the task's first eval split. Empty when no member scored an OoD set."""
    split = data.task.eval_splits[0]
    frames = []
    for method in data.methods.values():
        for ood, out_logits in method.ood.items():
            for group, idx, k, subsets in group_subsets(method, sizes[method.name]):
                scores = subset_ood_auroc(method.outputs[split][idx], out_logits[idx], subsets, combiner,
                                          chunk_elements)
                frames.append(pd.DataFrame({"ood": ood, "split": split, "method": method.name,
                                            "group": group.name, "k": k, **scores}))
    if not frames:
        return pd.DataFrame()
    combos = pd.concat(frames, ignore_index=True)
    table = protocol_mean(combos, OOD_KEYS, OOD_METRICS)
    table = table.join(combos.groupby(OOD_KEYS)[OOD_METRICS].std(ddof=1), rsuffix="_std")
    table.insert(0, "n_subsets", combos.groupby(OOD_KEYS).size())
    return table.reset_index()


def diversity_table(data: StoreData, iou_members: int) -> tuple[pd.DataFrame, dict[str, tuple[list[str], np.ndarray]]]:
    """Pairwise diversity per split x method (mean over each group's pairs, then over groups) and mask IoU."""
    ious = {}
    for method in data.methods.values():
        found = mask_iou_matrix(method, iou_members)
        if found is not None:
            ious[method.name] = found
    rows = []
    for split, labels in data.labels.items():
        for method in data.methods.values():
            per_group = [group_diversity(method.outputs[split][list(g.members)], labels, data.task.is_regression)
                         for g in method.groups if len(g.members) >= 2]
            if not per_group:
                continue
            row = {"split": split, "method": method.name, "groups": len(per_group)}
            for key in per_group[0]:
                values = [d[key] for d in per_group]
                counted = key == "pairs" or key.endswith("_undefined_pairs")
                row[key] = float(sum(values)) if counted else _mean_finite(values)
            if method.name in ious:
                iou = ious[method.name][1]
                row["mask_iou"] = float(iou[np.triu_indices(len(iou), k=1)].mean())
            rows.append(row)
    return pd.DataFrame(rows), ious


def _mean_finite(values: list[float]) -> float:
    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    if finite.any():
        return float(arr[finite].mean())
    return float("inf") if np.isinf(arr).any() else float("nan")
