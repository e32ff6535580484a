"""``make mechanism``'s report (docs/lottery.md): mask IoU among seeds per L1 setting in Figure 4's
layout, IoU against tau (CSV and plot), and the single-member dev accuracy of the final tickets.

Reads the study's stores, ``<root>/<l1_mode>_tau<tau>/<task>/<model>/<method>/seed_<s>``
(conf/experiment/mechanism.yaml), never a model. A store holds both stages: a member's
``trainer.epochs`` (its config.yaml) tells an accuracy-stage ticket from a mask-stage one.
    python -m ticket_ensembles.evaluation.mechanism mechanism/store results/mechanism
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from .. import store  # noqa: E402
from ..maskio import load_mask, mask_iou  # noqa: E402
from .paper import display_name  # noqa: E402

METHODS = ("base_lt", "active_lt", "random_lt")  # Figure 4's panels, left to right
_SETTING = re.compile(r"^(loss|decoupled)_tau(.+)$")
IOU_MEMBERS = 5


@dataclass
class Group:
    """The complete members of one method under one final-finetune length and one L1 setting."""

    final_epochs: float
    mode: str
    tau: float
    method: str
    members: dict[str, Path] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "none" if self.method == "base_lt" else f"{self.mode} τ={self.tau:g}"


def discover(root: Path) -> list[Group]:
    """Every (final length, L1 setting, method) group of complete members under ``root``."""
    groups: dict[tuple, Group] = {}
    for setting_dir in sorted(p for p in root.iterdir() if _SETTING.match(p.name)):
        mode, tau = _SETTING.match(setting_dir.name).groups()
        for model_dir in sorted(p for p in setting_dir.glob("*/*") if p.is_dir()):
            found = store.list_members(setting_dir, model_dir.parent.name, model_dir.name)
            for method in (m for m in METHODS if m in found):
                for name, folder in found[method].items():
                    if folder.parent.is_symlink():  # base_lt shown in another setting's store (mechanism.sh)
                        continue
                    epochs = final_epochs(folder)
                    key = (epochs, mode, float(tau), method)
                    groups.setdefault(key, Group(epochs, mode, float(tau), method)).members[name] = folder
    return list(groups.values())


def final_epochs(folder: Path) -> float:
    """The member's final-finetune length (trainer.epochs): 1 in the accuracy stage, 0.02 in the mask stage."""
    return float(yaml.safe_load((folder / "config.yaml").read_text())["trainer"]["epochs"])


def iou_matrix(group: Group) -> tuple[list[str], np.ndarray]:
    """IoU between the masks of the group's first IOU_MEMBERS members (the paper's Figure 4)."""
    names = list(group.members)[:IOU_MEMBERS]
    masks = [load_mask(group.members[n] / "mask.npz") for n in names]
    iou = np.eye(len(masks))
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            iou[i, j] = iou[j, i] = mask_iou(masks[i], masks[j])
    return names, iou


def round_lr_sum(folder: Path) -> float:
    """Summed lr of a pruning round: the most a loss-added L1 term moves a weight under Adam."""
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    steps = json.loads((folder / "run.json").read_text())["rounds"][0]["steps"]
    trainer = cfg["trainer"]
    if trainer.get("lr_schedule", "linear") != "linear" or trainer.get("warmup_ratio", 0) > 0:
        return float("nan")
    return trainer["lr"] * (steps + 1) / 2  # linear decay to 0 over `steps`: lr (N + 1) / 2


def iou_rows(groups: list[Group]) -> pd.DataFrame:
    rows = []
    for g in groups:
        if len(g.members) < 2:
            continue
        names, iou = iou_matrix(g)
        off = iou[np.triu_indices(len(names), 1)]
        lr_sum = round_lr_sum(next(iter(g.members.values())))
        push = 0.0 if g.method == "base_lt" else (g.tau * lr_sum if g.mode == "decoupled" else lr_sum)
        rows.append({"final_epochs": g.final_epochs, "method": g.method, **_l1(g), "members": len(names), "mean_iou": off.mean(), "min_iou": off.min(), "max_iou": off.max(),
                     "round_lr_sum": lr_sum, "push_per_round": push})
    return pd.DataFrame(rows)


def _l1(g: Group) -> dict:
    """The L1 columns: none for base_lt, whatever folder its members sit in."""
    return {"l1_mode": "none", "tau": float("nan")} if g.method == "base_lt" else {"l1_mode": g.mode, "tau": g.tau}


def accuracy_rows(groups: list[Group]) -> pd.DataFrame:
    rows = []
    for g in groups:
        acc = [json.loads((f / "metrics.json").read_text())["accuracy"] for f in g.members.values()]
        rows.append({"final_epochs": g.final_epochs, "method": g.method, **_l1(g), "members": len(acc), "seeds": " ".join(g.members), "accuracy_mean": np.mean(acc),
                     "accuracy_std": np.std(acc, ddof=1) if len(acc) > 1 else float("nan"),
                     "accuracy_per_seed": " ".join(f"{a:.2f}" for a in acc)})
    return pd.DataFrame(rows)


def figure4_panels(panels: list[tuple[str, list[str], np.ndarray]], title: str, path: Path) -> None:
    """Figure 4's layout: one IoU heatmap per method, side by side, one colour scale."""
    low = min(min(float(iou.min()) for _, _, iou in panels), 0.99)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.9 * len(panels), 3.6), squeeze=False)
    for ax, (name, members, iou) in zip(axes[0], panels):
        image = ax.imshow(iou, cmap="viridis_r", vmin=low, vmax=1.0)  # lower = yellower, as in the paper
        labels = [m.replace("seed_", "s") for m in members]
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{iou[i, j]:.3f}", ha="center", va="center", fontsize=7,
                        color="white" if iou[i, j] > (low + 1) / 2 else "black")
        ax.set_title(name, fontsize=10)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.02)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_iou_vs_tau(table: pd.DataFrame, path: Path) -> None:
    """Mean pairwise mask IoU against tau, one line per method and L1 mode; base_lt as a level."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    base = table[table.method == "base_lt"]
    if len(base):
        ax.axhline(base.mean_iou.iloc[0], color="grey", linestyle="--", label="BASE-LT (no L1)")
    for (method, mode), rows in table[table.method != "base_lt"].groupby(["method", "l1_mode"]):
        rows = rows.sort_values("tau")
        ax.plot(rows.tau, rows.mean_iou, marker="o" if mode == "decoupled" else "s",
                linestyle="-" if mode == "decoupled" else ":", label=f"{display_name(method)}, {mode}")
    ax.set_xscale("log")
    ax.set_xlabel("τ (l1_tau)")
    ax.set_ylabel("mean mask IoU between seeds")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(root: Path, out: Path) -> None:
    groups = discover(root)
    if not groups:
        raise SystemExit(f"error: no complete ticket members under {root}: run make mechanism first")
    mask_stage = min(g.final_epochs for g in groups)
    chosen = best_groups(groups)
    ious = iou_rows(chosen)
    accuracy = accuracy_rows(groups)
    out.mkdir(parents=True, exist_ok=True)
    ious.to_csv(out / "iou_vs_tau.csv", index=False, float_format="%.6g")
    accuracy.to_csv(out / "accuracy.csv", index=False, float_format="%.4f")
    plot_iou_vs_tau(ious, out / "iou_vs_tau.png")
    figures = write_heatmaps(chosen, out)
    lines = ["# make mechanism: mask IoU and single-ticket accuracy", "",
             f"Generated by `python -m ticket_ensembles.evaluation.mechanism {root} {out}`; the setting, machine "
             "and reading are in README.md beside this file and in docs/lottery.md.", "",
             "## Mask IoU between seeds", "",
             f"Per setting, the members of both stages by seed (accuracy stage: a full final finetune; mask stage: "
             f"final finetune {mask_stage:g} epoch; the final finetune never changes a mask, which is fixed after "
             "the last pruning round); final_epochs is the mask stage's where it ran. "
             "push per round: decoupled τ × Σlr of a round; loss: Σlr, the most Adam lets the term move a weight.", "",
             _markdown(ious), "",
             "## Single-member dev accuracy (%) of the final tickets", ""]
    full = accuracy[accuracy.final_epochs > mask_stage]
    lines += [_markdown(full), ""] if len(full) else ["(accuracy stage not run yet)", ""]
    lines += ["## Figures", "", *[f"- `{f}`" for f in ["iou_vs_tau.png", *figures]], ""]
    (out / "report.md").write_text("\n".join(lines))


def best_groups(groups: list[Group]) -> list[Group]:
    """Per method and L1 setting (any for base_lt), the members of both stages, by seed: the final
    finetune never changes a mask (fixed after the last pruning round), so the stages' masks are one set."""
    merged: dict[tuple, Group] = {}
    for g in sorted(groups, key=lambda g: (g.final_epochs, g.mode != "loss")):  # mask stage first
        key = ("", 0.0, g.method) if g.method == "base_lt" else (g.mode, g.tau, g.method)
        into = merged.setdefault(key, Group(g.final_epochs, g.mode, g.tau, g.method))
        for name, folder in g.members.items():
            into.members.setdefault(name, folder)
    for g in merged.values():
        g.members = dict(sorted(g.members.items(), key=lambda kv: store.parse_member_name(kv[0])))
    return list(merged.values())


def write_heatmaps(groups: list[Group], out: Path) -> list[str]:
    """figure4_<mode>_tau<tau>.png: BASE-LT beside ACTIVE-LT and RANDOM-LT at that setting."""
    base = next((g for g in groups if g.method == "base_lt" and len(g.members) > 1), None)
    written = []
    for mode, tau in sorted({(g.mode, g.tau) for g in groups if g.method != "base_lt"}):
        panels = [(display_name("base_lt"), *iou_matrix(base))] if base else []
        panels += [(f"{display_name(g.method)} ({mode}, τ={tau:g})", *iou_matrix(g)) for m in METHODS[1:]
                   for g in groups if (g.method, g.mode, g.tau) == (m, mode, tau) and len(g.members) > 1]
        if len(panels) > 1:
            name = f"figure4_{mode}_tau{tau:g}.png"
            figure4_panels(panels, f"mask IoU between seeds, L1 {mode} τ={tau:g}", out / name)
            written.append(name)
    return written


def _markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    rows = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rec in table.itertuples(index=False):
        rows.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in rec) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_root", type=Path, help="the study's store folder (mechanism/store)")
    parser.add_argument("out", type=Path, help="where the report goes (results/mechanism)")
    args = parser.parse_args(argv)
    if not args.store_root.is_dir():
        sys.exit(f"error: {args.store_root} is not a folder: run make mechanism first, or pass its store folder")
    write_report(args.store_root, args.out)
    print(f"wrote {args.out}/report.md, iou_vs_tau.csv/.png, accuracy.csv, figure4_*.png")


if __name__ == "__main__":
    main()
