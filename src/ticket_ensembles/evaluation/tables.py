"""Render the paper's tables from the summary and diversity frames (Markdown and LaTeX).

Marks follow the paper: italic = significantly better than BASELINE (Student's t-test,
p < ensemble.alpha), bold-italic = significantly better than both BASELINE and BASE-LT,
underline = the best ens. value of the column.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import pandas as pd

from .metrics import CALIBRATION, LOWER_IS_BETTER
from .paper import display_name, method_order, paper_table1, paper_table2

_DIVERSITY_COLUMNS = [("q_statistic", "Q ↓"), ("ratio_errors", "ratio errors ↑"),
                      ("negative_double_fault", "neg. double fault ↑"), ("disagreement", "disagreement ↑"),
                      ("correlation", "correlation ↓"), ("prediction_disagreement", "pred. disagreement ↑"),
                      ("kl", "KL ↑"), ("score_correlation", "score correlation ↓"), ("mask_iou", "mask IoU ↓")]


Section = tuple[str, list[str], list[list[str]]]  # (heading, header, rows)


@dataclass(frozen=True)
class TableSetting:
    task: str
    model: str
    k: int  # the ens. column's ensemble size
    combiner: str
    compare_to: tuple[str, ...]  # (baseline, reference) of the t-tests and marks


def fmt(value: float, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _mark(text: str, row: pd.Series, setting: TableSetting, best: bool, for_latex: bool) -> str:
    flags = [bool(row.get(f"better_than_{m}", False)) for m in setting.compare_to]
    if flags and all(flags) and len(flags) > 1:
        text = rf"\textbf{{\textit{{{text}}}}}" if for_latex else f"***{text}***"
    elif flags and flags[0]:
        text = rf"\textit{{{text}}}" if for_latex else f"*{text}*"
    if best:
        text = rf"\underline{{{text}}}" if for_latex else f"<u>{text}</u>"
    return text


def _rows_at(frame: pd.DataFrame, table_k: int, single: bool) -> pd.DataFrame:
    """Per method the k = 1 rows, or the table's k (EDST: capped at its tickets per run)."""
    if single:
        return frame[frame.k == 1].set_index("method")
    # EDST runs hold M tickets: their row shows k = M when M < the table's k (marked in the cell)
    k_of = frame.groupby("method").k.max().clip(upper=table_k)
    return frame[frame.k == frame.method.map(k_of)].set_index("method")


def table_rows(summary: pd.DataFrame, split: str, metric: str, setting: TableSetting) -> pd.DataFrame:
    """One metric's rows at the table's k, in the paper's method order."""
    rows = _rows_at(summary[(summary.split == split) & (summary.metric == metric)], setting.k, single=False)
    return rows.loc[method_order(list(rows.index))]


def _ens_text(row: pd.Series, setting: TableSetting) -> str:
    return fmt(row.ens_mean) + ("" if row.k == setting.k else f" (k={row.k})")


def _table1_row(method: str, row: pd.Series, setting: TableSetting, best: bool, for_latex: bool,
                published: dict | None) -> list[str]:
    line = [display_name(method), fmt(row.single_mean), _mark(_ens_text(row, setting), row, setting, best, for_latex),
            fmt(row["diff"], signed=True)]
    line += [fmt_p(row.get(f"p_vs_{m}", float("nan"))) for m in setting.compare_to]
    if published is not None:
        figures = published.get(method)
        line += [fmt(figures[0]), fmt(figures[1]), fmt(figures[2], signed=True)] if figures else ["–"] * 3
    return line


def table1_sections(summary: pd.DataFrame, setting: TableSetting, for_latex: bool) -> list[Section]:
    """(title, header, rows) per split and task metric, ens. at k, with marks and the paper's figures."""
    paper = paper_table1(setting.task, setting.model)
    first_split = summary.split.iloc[0] if len(summary) else ""
    sections = []
    for split in dict.fromkeys(summary.split):
        for metric in [m for m in dict.fromkeys(summary.metric) if m not in CALIBRATION]:
            rows = table_rows(summary, split, metric, setting)
            with_paper = paper is not None and split == first_split and metric == summary.metric.iloc[0]
            header = ["method", "single", f"ens. (k={setting.k})", "diff."]
            header += [f"p vs {display_name(m)}" for m in setting.compare_to]
            header += ["paper single", "paper ens.", "paper diff."] if with_paper else []
            best = rows.ens_mean.min() if metric in LOWER_IS_BETTER else rows.ens_mean.max()
            body = [_table1_row(method, row, setting, row.ens_mean == best and len(rows) > 1, for_latex,
                                paper[1] if with_paper else None) for method, row in rows.iterrows()]
            note = f" · published: {paper[0]}" if with_paper else ""
            sections.append((f"{split} · {metric}{note}", header, body))
    return sections


def calibration_section(summary: pd.DataFrame, setting: TableSetting) -> list[Section]:
    """NLL / ECE / Brier of single members and of the k-ensemble (classification only)."""
    sections = []
    for split in dict.fromkeys(summary.split):
        if not summary[(summary.split == split) & summary.metric.isin(CALIBRATION)].ens_mean.notna().any():
            continue  # regression, or majority vote (no probabilities)
        tables = {m: table_rows(summary, split, m, setting) for m in CALIBRATION}
        header = ["method"] + [f"{m} {which}" for m in CALIBRATION for which in ("single", "ens.")]
        body = [[display_name(method)] + [fmt(tables[m].loc[method, col], 4) for m in CALIBRATION
                                          for col in ("single_mean", "ens_mean")]
                for method in tables[CALIBRATION[0]].index]
        sections.append((f"{split} · calibration (lower is better)", header, body))
    return sections


def cost_section(summary: pd.DataFrame, setting: TableSetting) -> list[Section]:
    """FreeTickets' headline comparison: score, NLL, ECE, training and inference FLOPs of single
    members (k = 1) and of the k-ensemble, FLOPs relative to one dense model."""
    if "train_flops_rel_dense" not in summary or summary.train_flops_rel_dense.isna().all():
        return []
    metrics = [summary.metric.iloc[0]] + [m for m in ("nll", "ece") if m in set(summary.metric)]
    header = ["method", "k"] + metrics + ["train FLOPs (× dense)", "inference FLOPs (× dense)"]
    sections = []
    for split in dict.fromkeys(summary.split):
        part = summary[summary.split == split]
        body = []
        for single in (True, False):
            rows = {m: _rows_at(part[part.metric == m], setting.k, single) for m in metrics}
            body += [_cost_row(method, {m: rows[m].loc[method] for m in metrics})
                     for method in rows[metrics[0]].index if single or rows[metrics[0]].loc[method].k > 1]
        order = method_order(list(dict.fromkeys(part.method)))
        body.sort(key=lambda line: (order.index(line[0]), int(line[1])))
        sections.append((f"{split} · cost (FreeTickets' comparison)", header,
                         [[display_name(line[0])] + line[1:] for line in body]))
    return sections


def _cost_row(method: str, rows: dict[str, pd.Series]) -> list[str]:
    first = next(iter(rows.values()))
    scores = [fmt(r.ens_mean, 4 if m in CALIBRATION else 2) for m, r in rows.items()]
    return [method, str(first.k), *scores, fmt(first.train_flops_rel_dense), fmt(first.inference_flops_rel_dense)]


def ood_section(ood: pd.DataFrame | None, setting: TableSetting) -> list[Section]:
    """OoD detection AUROC (%) of MSP and of predictive entropy: single members and the k-ensemble."""
    if ood is None or ood.empty:
        return []
    sections = []
    for (name, split), part in ood.groupby(["ood", "split"], sort=False):
        single, ens = _rows_at(part, setting.k, True), _rows_at(part, setting.k, False)
        ens_k = f"ens. (k={setting.k})"
        header = ["method", "MSP single", f"MSP {ens_k}", "entropy single", f"entropy {ens_k}"]
        body = []
        for method in method_order(list(ens.index)):
            mark = "" if ens.loc[method].k == setting.k else f" (k={ens.loc[method].k})"
            body.append([display_name(method), fmt(single.loc[method].auroc_msp), fmt(ens.loc[method].auroc_msp) + mark,
                         fmt(single.loc[method].auroc_entropy), fmt(ens.loc[method].auroc_entropy) + mark])
        sections.append((f"OoD detection · {split} vs {name} (AUROC %, higher is better)", header, body))
    return sections


def degenerate_section(flagged: pd.DataFrame | None, summary: pd.DataFrame, excluded: bool) -> list[Section]:
    """The members that learned nothing, right under Table 1: whether the tables hold them, and why each."""
    if flagged is None or flagged.empty:
        return []
    if excluded:
        gone = [m for m in dict.fromkeys(flagged.method) if m not in set(summary.method)]
        heading = "members that learned nothing: left out of every table (ensemble.exclude_degenerate=true)"
        heading += f"; no member of {', '.join(display_name(m) for m in gone)} is left" if gone else ""
    else:
        heading = "members that learned nothing: in every table (ensemble.exclude_degenerate=true leaves them out)"
    body = [[display_name(r.method), r.member, r.reason] for r in flagged.itertuples()]
    return [(heading, ["method", "member", "why"], body)]


def floor_section(below: tuple[pd.DataFrame, float | None, str] | None) -> list[Section]:
    """The evaluated members below the study's floor (ensemble.min_score), under Table 1: they stay in the tables."""
    if below is None or below[0].empty:
        return []
    members, floor, metric = below
    heading = f"members below ensemble.min_score={floor:g} ({metric}): in every table"
    body = [[display_name(r[0]), r[1], fmt(r[2])] for r in members.itertuples(index=False)]
    return [(heading, ["method", "member", metric], body)]


def markdown(title: str, sections: list[Section], notes: list[str]) -> str:
    out = [f"# {title}", ""]
    for heading, header, body in sections:
        out += [f"## {heading}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(line) + " |" for line in body]
        out.append("")
    return "\n".join(out + notes) + "\n"


def latex(title: str, sections: list[Section]) -> str:
    out = [f"% {title}", "% needs \\usepackage{booktabs}"]
    for heading, header, body in sections:
        out += [f"% {heading}", r"\begin{tabular}{" + _align(body, len(header)) + "}", r"\toprule",
                " & ".join(_tex(h) for h in header) + r" \\", r"\midrule"]
        out += [" & ".join(_tex(c) for c in line) + r" \\" for line in body]
        out += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(out).replace("–", "--") + "\n"


def _align(body: list[list[str]], columns: int) -> str:
    """l for the first column and for text columns (a member, a reason), r for numbers."""
    def number(cell: str) -> bool:
        token = re.sub(r"\\\w+\{|</?u>|[{}*<]", "", cell).split(" ")[0]  # marks off: 85.05, <0.001, –
        return token == "–" or re.fullmatch(r"[-+]?\d+(\.\d+)?", token) is not None
    return "l" + "".join("r" if all(number(line[c]) for line in body) else "l" for c in range(1, columns))


def _tex(text: str) -> str:
    return text.replace("_", r"\_").replace("%", r"\%").replace("<", r"$<$").replace("×", r"$\times$")


def table1(summary: pd.DataFrame, setting: TableSetting, ood: pd.DataFrame | None = None,
           degenerate: pd.DataFrame | None = None, excluded: bool = False,
           below: tuple[pd.DataFrame, float | None, str] | None = None) -> tuple[str, str]:
    """(table1.md, table1.tex): Table 1, the members that learned nothing, those below ensemble.min_score,
    calibration, cost and OoD sections. ``below``: (members, floor, metric) from members.below_floor."""
    title = f"Table 1 · {setting.task} · {setting.model} · {setting.combiner}, ens. = every {setting.k}-subset"
    notes = ["*italic*: significantly better than "
             f"{display_name(setting.compare_to[0]) if setting.compare_to else 'the baseline'} "
             "(Student's t-test over subsets); ***bold-italic***: better than both "
             f"{' and '.join(display_name(m) for m in setting.compare_to)}; <u>underline</u>: best. "
             "Scores in percent; single = mean of the single members."]
    flags = degenerate_section(degenerate, summary, excluded) + floor_section(below)
    rest = calibration_section(summary, setting)
    costs = cost_section(summary, setting)
    if costs:
        notes.append("Cost: analytic training FLOPs of the ensemble's members and inference FLOPs per example, "
                     "relative to ONE dense model (docs/evaluation.md, FLOPs); EDST tickets each carry 1/M of their run; "
                     "– = a member without run.json.")
    rest += costs + ood_section(ood, setting)
    md = markdown(title, table1_sections(summary, setting, for_latex=False) + flags + rest, notes)
    return md, latex(title, table1_sections(summary, setting, for_latex=True) + flags + rest)


def table2(diversity: pd.DataFrame, setting: TableSetting) -> str:
    """table2.md: diversity per method (mean over member pairs), the published Table 2 beside when it matches."""
    sections = []
    for split in dict.fromkeys(diversity.split):
        rows = diversity[diversity.split == split].set_index("method")
        cols = [(c, label) for c, label in _DIVERSITY_COLUMNS if c in rows and not rows[c].isna().all()]
        body = [[display_name(m)] + [fmt(rows.loc[m, c], 3) for c, _ in cols] for m in method_order(list(rows.index))]
        sections.append((f"{split} · ours", ["method"] + [label for _, label in cols], body))
    published = paper_table2(setting.task, setting.model)
    if published:
        header = ["method"] + [label for _, label in _DIVERSITY_COLUMNS[:5]]
        body = [[display_name(m)] + [fmt(v) for v in values] for m, values in published.items()]
        sections.append(("published: Kobayashi et al. 2022, Table 2", header, body))
    notes = ["Pairs i < j within each ensemble group, averaged over pairs, then over groups. ↓/↑: the "
             "direction that means more diverse. Undefined pairs (e.g. ratio errors with no shared error) "
             "are counted in diversity.csv and left out of the mean."]
    return markdown(f"Table 2 · diversity · {setting.task} · {setting.model}", sections, notes)
