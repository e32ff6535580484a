"""``evaluate(cfg)``: store -> every ensemble's scores -> tables and figures, written all at once.

Everything is computed before anything is written, and the report folder is built in a
hidden temporary folder that replaces the old one in one rename: a failure never leaves
half a report.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import store
from ..tasks import get_task
from .aggregate import combinations_table, diversity_table, metric_names, ood_table, summary_table
from .combine import check_combiner
from .errors import EvaluationError
from .loading import check_sizes, group_rows, load_store
from .members import (below_floor, check_settings, degenerate, exclude, member_table, single_scores,
                      warn_mixed_hardware)
from .paper import display_name
from .tables import TableSetting, fmt, fmt_p, table1, table2, table_rows
from .wandb_log import log_report

log = logging.getLogger(__name__)


@dataclass
class Report:
    """Everything a report holds, computed and not yet written."""

    setting: TableSetting
    members: pd.DataFrame  # one row per member
    groups: pd.DataFrame  # one row per method and group
    combinations: pd.DataFrame
    summary: pd.DataFrame
    diversity: pd.DataFrame
    ood: pd.DataFrame  # empty when no member scored an OoD set
    ious: dict
    headline: str
    baseline: str | None
    degenerate: pd.DataFrame  # members that learned nothing: method, member, reason
    excluded: bool  # ensemble.exclude_degenerate: the tables are without them
    below: pd.DataFrame  # evaluated members below ensemble.min_score: method, member, score
    min_score: float | None


def evaluate(cfg) -> Path:
    """Evaluate the store for cfg.task and cfg.model; returns the report folder."""
    report = compute_report(cfg)
    out = report_dir(cfg, report.setting.model)
    with building_report(out) as tmp:
        write_report(report, tmp)
    log.info("report written to %s", out)
    _log_headline(report)
    log_report(cfg, report, out)  # logger=wandb only
    return out


def compute_report(cfg) -> Report:
    ens = cfg.ensemble
    try:
        task = get_task(cfg.task.name)
    except ValueError as e:
        raise EvaluationError(str(e)) from None
    combiner = check_combiner(ens.combiner, task)
    model = store.model_folder(cfg.model)
    groups = [list(map(int, g)) for g in ens.groups]
    share, margin = float(ens.degenerate_share), float(ens.degenerate_margin)
    if not 0 < share <= 1 or margin < 0:
        raise EvaluationError(f"ensemble.degenerate_share={share:g} must be in (0, 1] and ensemble.degenerate_margin="
                              f"{margin:g} at least 0: the defaults are 0.95 and 1.0")
    data = load_store(cfg.paths.store_dir, task, model, list(ens.methods) if ens.methods else None, groups)
    check_settings(data, bool(ens.allow_mixed_settings))
    singles = single_scores(data, share, margin)
    flagged = degenerate(singles, data)
    every_method = list(data.methods.values())
    if ens.exclude_degenerate and len(flagged):
        exclude(data, flagged)
    warn_mixed_hardware(data)
    sizes = check_sizes(data, int(ens.max_size))
    k = _table_size(ens.table_size, int(ens.max_size))
    members = member_table(every_method, singles, task, task.eval_splits[0])
    min_score = None if ens.min_score is None else float(ens.min_score)
    below = below_floor(members, task.main_metric, min_score)
    groups_table = pd.DataFrame(group_rows(every_method))
    combos = combinations_table(data, sizes, combiner, int(ens.ece_bins), int(ens.chunk_elements))
    compare_to = tuple(m for m in dict.fromkeys([ens.baseline, ens.reference]) if m in data.methods)
    summary = summary_table(combos, metric_names(data), list(compare_to), float(ens.alpha))
    diversity, ious = diversity_table(data, int(ens.iou_members))
    ood = ood_table(data, sizes, combiner, int(ens.chunk_elements))
    setting = TableSetting(task.name, model, k, combiner, compare_to)
    baseline = ens.baseline if ens.baseline in data.methods else None
    return Report(setting, members, groups_table, combos, summary, diversity, ood, ious, task.main_metric, baseline,
                  flagged, bool(ens.exclude_degenerate), below, min_score)


def _table_size(table_size: int | None, max_size: int) -> int:
    if table_size is None:
        return max_size
    if not 1 <= table_size <= max_size:
        raise EvaluationError(f"ensemble.table_size={table_size} must be between 1 and ensemble.max_size={max_size}")
    return int(table_size)


def report_dir(cfg, model: str) -> Path:
    if cfg.ensemble.report_dir:
        return Path(cfg.ensemble.report_dir)
    return Path(cfg.paths.report_dir) / cfg.task.name / model


def write_report(report: Report, folder: Path) -> None:
    """Every output file (docs/evaluation.md says what each holds)."""
    from .figures import figure3, figure4  # matplotlib: only paid when writing

    report.summary.to_csv(folder / "summary.csv", index=False)
    report.combinations.to_csv(folder / "combinations.csv", index=False)
    report.diversity.to_csv(folder / "diversity.csv", index=False)
    report.members.to_csv(folder / "members.csv", index=False)
    report.groups.to_csv(folder / "groups.csv", index=False)
    if not report.ood.empty:
        report.ood.to_csv(folder / "ood.csv", index=False)
    md, tex = table1(report.summary, report.setting, report.ood, report.degenerate, report.excluded,
                     (report.below, report.min_score, report.headline))
    (folder / "table1.md").write_text(md)
    (folder / "table1.tex").write_text(tex)
    if not report.diversity.empty:
        (folder / "table2.md").write_text(table2(report.diversity, report.setting))
    figure3(report.summary, report.headline, report.baseline, folder / "figure3.png", report.setting)
    for method, (members, iou) in report.ious.items():
        figure4(method, members, iou, folder / f"figure4_{method}.png")


@contextlib.contextmanager
def building_report(final: Path) -> Iterator[Path]:
    """A hidden temporary folder that replaces ``final`` only when the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def headline_rows(report: Report) -> pd.DataFrame:
    """The headline metric of the first split at the table's k: what the console shows."""
    return table_rows(report.summary, report.summary.split.iloc[0], report.headline, report.setting)


def _log_headline(report: Report) -> None:
    rows = headline_rows(report)
    log.info("%s %s, k=%d: method single ens. diff. %s", report.setting.task, report.headline, report.setting.k,
             " ".join(f"p_vs_{m}" for m in report.setting.compare_to))
    for method, r in rows.iterrows():
        ps = " ".join(fmt_p(r[f"p_vs_{m}"]) for m in report.setting.compare_to)
        log.info("  %-12s %7s %7s %7s %s", display_name(method), fmt(r.single_mean), fmt(r.ens_mean),
                 fmt(r["diff"], signed=True), ps)
    if len(report.degenerate):
        log.warning("members that learned nothing (%s):", "left out of every table: ensemble.exclude_degenerate=true"
                    if report.excluded else "in every table; ensemble.exclude_degenerate=true leaves them out")
        for r in report.degenerate.itertuples():
            log.warning("  %s/%s: %s", r.method, r.member, r.reason)
    if len(report.below):
        log.warning("members below ensemble.min_score=%g (in every table):", report.min_score)
        for r in report.below.itertuples(index=False):
            log.warning("  %s/%s: %s %.2f", r.method, r.member, report.headline, r[2])
