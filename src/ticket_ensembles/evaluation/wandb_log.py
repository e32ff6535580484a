"""The evaluation run on W&B (logger=wandb): every Table 1 number in its summary, the tables,
every figure, and the report folder as an artifact (docs/wandb.md).

Its group is the one the training runs share, so one dashboard holds a sweep and its report.
The report is on disk before anything is sent: a W&B failure costs no result.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)
_TABLES = ("summary", "diversity", "members", "groups", "ood")  # small: logged as W&B tables
_STATS = {"single": "single_mean", "single_std": "single_std", "ens": "ens_mean", "ens_std": "ens_std", "diff": "diff"}


def summary_metrics(report) -> dict[str, float]:
    """Table 1 at the table's k: ``<method>/<metric>/{single,single_std,ens,ens_std,diff,p_vs_<m>}``
    (eval splits after the first are prefixed ``<split>/``), and OoD AUROCs as ``ood_<set>/<method>/...``."""
    s, k = report.summary, report.setting.k
    first = s.split.iloc[0]
    out: dict[str, float] = {"k": k}
    for row in s[s.k == k].to_dict("records"):
        key = ("" if row["split"] == first else f"{row['split']}/") + f"{row['method']}/{row['metric']}"
        values = {name: row[col] for name, col in _STATS.items()}
        values |= {f"p_vs_{m}": row[f"p_vs_{m}"] for m in report.setting.compare_to}
        out |= {f"{key}/{name}": float(v) for name, v in values.items() if _finite(v)}
    if not report.ood.empty:
        for row in report.ood[report.ood.k == k].to_dict("records"):
            out |= {f"ood_{row['ood']}/{row['method']}/{m}": float(row[m]) for m in ("auroc_msp", "auroc_entropy")
                    if _finite(row[m])}
    return out


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def log_report(cfg, report, out: Path) -> None:
    """With logger=wandb: one run of job type ``evaluate`` in the training runs' group."""
    from omegaconf import OmegaConf

    from ..loggers import init_wandb, wandb_group

    task, model = report.setting.task, report.setting.model
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) | {"member": {"phase": "evaluate"}}
    run = init_wandb(cfg.logger, job_type="evaluate", group=wandb_group(cfg.logger, cfg.experiment_name, task, model),
                     name=f"evaluate/{task}/{model}", config=config, tags=("evaluate",), dir=cfg.paths.log_dir)
    if run is None:
        return
    import wandb

    try:
        run.summary.update(summary_metrics(report))
        images = {p.stem: wandb.Image(str(p)) for p in sorted(out.glob("*.png"))}  # figure3, figure4_<method>
        run.log(_tables(wandb, run, report, cfg.experiment_name) | images)
        artifact = wandb.Artifact(_artifact_name("report", cfg.experiment_name, task, model), type="evaluation")
        artifact.add_dir(str(out))
        run.log_artifact(artifact)
    except wandb.errors.Error as e:  # the report is already written: say so, and keep the exit code 0
        log.warning("W&B logging of the report failed (%s): the report in %s is complete", e, out)
        run.finish(exit_code=1)
        return
    run.finish()


def _tables(wandb, run, report, experiment: str) -> dict:
    """The small tables, to log; combinations too, unless too long for a logged table: then an artifact."""
    tables = {name: wandb.Table(dataframe=getattr(report, name)) for name in _TABLES
              if not getattr(report, name).empty}
    combos: pd.DataFrame = report.combinations
    if len(combos) <= wandb.Table.MAX_ROWS:
        return tables | {"combinations": wandb.Table(dataframe=combos)}
    if len(combos) > wandb.Table.MAX_ARTIFACT_ROWS:
        log.info("W&B: %d combinations are more than a W&B table holds; combinations.csv is in the report "
                 "artifact", len(combos))
        return tables
    s = report.setting
    artifact = wandb.Artifact(_artifact_name("combinations", experiment, s.task, s.model),
                              type="evaluation-table")
    artifact.add(wandb.Table(dataframe=combos), "combinations")
    run.log_artifact(artifact)
    return tables


def _artifact_name(*parts: str) -> str:
    """W&B artifact names allow letters, digits, dashes, underscores and dots."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(map(str, parts)))
