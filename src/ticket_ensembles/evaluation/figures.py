"""The paper's figures: ensemble gain over BASELINE against k (Fig. 3) and mask IoU heatmaps (Fig. 4)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .paper import display_name, method_order  # noqa: E402


def figure3(summary: pd.DataFrame, metric: str, baseline: str | None, path: Path, setting=None) -> None:
    """Ensemble score minus BASELINE's at the same k, for k = 1..max (absolute scores without a baseline)."""
    fig = draw_figure3(summary, metric, baseline, setting)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_figure3(summary: pd.DataFrame, metric: str, baseline: str | None, setting=None) -> plt.Figure:
    """Figure 3; ``setting`` (tables.TableSetting) puts its task and model in the title."""
    splits = list(dict.fromkeys(summary.split))
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 4.1), squeeze=False)
    for ax, split in zip(axes[0], splits):
        rows = summary[(summary.split == split) & (summary.metric == metric)]
        base = rows[rows.method == baseline].set_index("k").ens_mean if baseline else None
        for method in method_order(list(dict.fromkeys(rows.method))):
            mine = rows[rows.method == method].set_index("k").ens_mean
            if base is not None:
                mine = (mine - base).dropna()
            ax.plot(mine.index, mine.values, marker="o", label=display_name(method))
        ax.set_xlabel("ensemble size k")
        # the task metrics are in percent: a difference of two is in points
        ax.set_ylabel(f"{metric} − {display_name(baseline)} (points)" if base is not None else f"{metric} (%)")
        ax.set_title(split)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if base is not None:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.legend(fontsize=8)
    if setting is not None:
        fig.suptitle(f"{setting.task} · {setting.model} · {setting.combiner}", fontsize=11)
    fig.tight_layout()
    return fig


def figure4(method: str, members: list[str], iou: np.ndarray, path: Path) -> None:
    """Heatmap of the mask IoU between members (lower = more dissimilar masks)."""
    fig = draw_figure4(method, members, iou)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_figure4(method: str, members: list[str], iou: np.ndarray) -> plt.Figure:
    n = len(members)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * n, 0.6 + 0.8 * n))
    image = ax.imshow(iou, cmap="viridis_r", vmin=min(float(iou.min()), 0.99), vmax=1.0)
    labels = [m.replace("seed_", "s").replace("_ticket_", "t") for m in members]
    ax.set_xticks(range(n), labels, rotation=45)
    ax.set_yticks(range(n), labels)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{iou[i, j]:.3f}", ha="center", va="center", fontsize=7,
                    color=text_colour(image.cmap(image.norm(iou[i, j]))))
    ax.set_title(f"mask IoU · {display_name(method)}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def text_colour(rgba) -> str:
    """Black on a light cell, white on a dark one (the cell colour's relative luminance, WCAG)."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "black" if luminance > 0.179 else "white"
