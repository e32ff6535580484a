"""The paper's figures: ensemble gain over BASELINE against k (Fig. 3) and mask IoU heatmaps (Fig. 4)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .paper import display_name, method_order  # noqa: E402


def figure3(summary: pd.DataFrame, metric: str, baseline: str | None, path: Path) -> None:
    """Ensemble score minus BASELINE's at the same k, for k = 1..max (absolute scores without a baseline)."""
    splits = list(dict.fromkeys(summary.split))
    fig, axes = plt.subplots(1, len(splits), figsize=(5.2 * len(splits), 3.8), squeeze=False)
    for ax, split in zip(axes[0], splits):
        rows = summary[(summary.split == split) & (summary.metric == metric)]
        base = rows[rows.method == baseline].set_index("k").ens_mean if baseline else None
        for method in method_order(list(dict.fromkeys(rows.method))):
            mine = rows[rows.method == method].set_index("k").ens_mean
            if base is not None:
                mine = (mine - base).dropna()
            ax.plot(mine.index, mine.values, marker="o", label=display_name(method))
        ax.set_xlabel("ensemble size k")
        ax.set_ylabel(f"{metric} − {display_name(baseline)}" if base is not None else metric)
        ax.set_title(split)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if base is not None:
            ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure4(method: str, members: list[str], iou: np.ndarray, path: Path) -> None:
    """Heatmap of the mask IoU between members (lower = more dissimilar masks)."""
    n = len(members)
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * n, 0.6 + 0.8 * n))
    image = ax.imshow(iou, cmap="viridis_r", vmin=min(float(iou.min()), 0.99), vmax=1.0)
    labels = [m.replace("seed_", "s").replace("_ticket_", "t") for m in members]
    ax.set_xticks(range(n), labels, rotation=45)
    ax.set_yticks(range(n), labels)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{iou[i, j]:.3f}", ha="center", va="center", fontsize=7,
                    color="white" if iou[i, j] > (iou.min() + 1) / 2 else "black")
    ax.set_title(f"mask IoU · {display_name(method)}")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
