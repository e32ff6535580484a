"""From the store's arrays to the three result tables: combinations, summary, diversity.

Protocol (METHODS.md, Section 4): for each k, score every k-subset of each group, average
within the group, then over the groups. "single" is the k = 1 row.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .combine import score_subsets, subset_matrix
from .diversity import group_diversity
from .loading import StoreData
from .masks import mask_iou_matrix
from .metrics import CALIBRATION, LOWER_IS_BETTER
from .significance import significantly_better, student_t

KEYS = ["split", "method", "k"]


def metric_names(data: StoreData) -> list[str]:
    """The task's metrics (headline first), then calibration for classification."""
    return list(data.task.metrics) + ([] if data.task.is_regression else list(CALIBRATION))


def combinations_table(data: StoreData, sizes: dict[str, int], combiner: str, ece_bins: int,
                       chunk_elements: int) -> pd.DataFrame:
    """One row per evaluated subset: split, method, group, k, members, and every metric."""
    frames = []
    for split, labels in data.labels.items():
        for method in data.methods.values():
            for group in method.groups:
                if not group.members:
                    continue
                logits = method.outputs[split][list(group.members)]
                for k in range(1, min(sizes[method.name], len(group.members)) + 1):
                    subsets = subset_matrix(len(group.members), k)
                    scores = score_subsets(logits, labels, subsets, data.task, combiner, ece_bins, chunk_elements)
                    names = np.array([method.members[i] for i in group.members])
                    frame = pd.DataFrame({"split": split, "method": method.name, "group": group.name, "k": k,
                                          "members": [" ".join(row) for row in names[subsets]], **scores})
                    frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def summary_table(combos: pd.DataFrame, metrics: list[str], compare_to: list[str], alpha: float) -> pd.DataFrame:
    """One row per split x method x k x metric: single, ens. and diff. with t-tests against ``compare_to``."""
    by_group = combos.groupby(KEYS + ["group"])[metrics].mean()
    ens_mean = by_group.groupby(level=KEYS).mean()
    ens_std = combos.groupby(KEYS)[metrics].std(ddof=1)
    n_subsets = combos.groupby(KEYS).size()
    samples = {key: frame for key, frame in combos.groupby(KEYS)}
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
            rows.append(row)
    return pd.DataFrame(rows)


def _compare(mine: np.ndarray, theirs: pd.DataFrame | None, metric: str, alpha: float,
             same: bool) -> tuple[float, bool]:
    if theirs is None or same:
        return float("nan"), False
    other = theirs[metric].to_numpy()
    _, p = student_t(mine, other)
    return p, significantly_better(mine, other, p, alpha, metric in LOWER_IS_BETTER)


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
