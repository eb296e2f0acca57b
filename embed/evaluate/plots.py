"""Evaluation plots (matplotlib, Agg backend, PNG): ROC curves of the kNN vote and a PCA map."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np

METHOD_STYLE = {"model": ("tab:blue", "-"), "untrained": ("tab:orange", "--"), "pixels": ("tab:green", ":")}
MAX_LEGEND = 12  # colour groups beyond this are drawn grey as "other"


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _roc(ax, y: np.ndarray, s: np.ndarray, label: str, method: str) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    color, ls = METHOD_STYLE.get(method, ("black", "-"))
    ax.plot(fpr, tpr, color=color, linestyle=ls, label=f"{label} (AUC {roc_auc_score(y, s):.3f})")


def _finish_roc(ax, title: str) -> None:
    ax.plot([0, 1], [0, 1], color="grey", linewidth=0.6)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")


def plot_roc_per_class(raws: dict[str, Any], classes: Sequence[str], path: Path) -> Path | None:
    """One panel per class with both outcomes among the queries, one curve per method."""
    first = next(iter(raws.values()))
    truth = first["class_truth"]
    cols = [j for j in range(len(classes)) if 0 < truth[:, j].sum() < len(truth)]
    if not cols:
        return None
    plt = _plt()
    n = len(cols)
    ncol = min(3, n)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3.8 * nrow), squeeze=False)
    for ax, j in zip(axes.flat, cols):
        for method, raw in raws.items():
            _roc(ax, raw["class_truth"][:, j], raw["class_scores"][:, j], method, method)
        pos = int(truth[:, j].sum())
        _finish_roc(ax, f"{classes[j]} ({pos} pos / {len(truth) - pos} neg)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("kNN-vote ROC per class (k nearest other-patient references)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc_tasks(raws: dict[str, Any], path: Path) -> Path | None:
    """One panel per source task (Kermany, NIH, covid-chestxray) present in the queries."""
    from embed.evaluate.tasks import TASKS

    tasks = [t for t in TASKS if any(t.name in r["tasks"] for r in raws.values())]
    tasks = [t for t in tasks if 0 < next(iter(raws.values()))["tasks"][t.name][0].sum()
             < len(next(iter(raws.values()))["tasks"][t.name][0])]
    if not tasks:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        for method, raw in raws.items():
            y, s = raw["tasks"][task.name]
            _roc(ax, y, s, method, method)
        y = next(iter(raws.values()))["tasks"][task.name][0]
        _finish_roc(ax, f"{task.title}\n({int(y.sum())} pos / {int((~y).sum())} neg)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _scatter(ax, xy: np.ndarray, groups: Sequence[str], title: str) -> None:
    counts = Counter(groups)
    top = [g for g, _ in counts.most_common(MAX_LEGEND)]
    cmap = _plt().get_cmap("tab20" if len(top) > 10 else "tab10")
    g_arr = np.asarray(groups, dtype=object)
    other = ~np.isin(g_arr, top)
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=6, c="lightgrey", label=f"other ({int(other.sum())})")
    for i, g in enumerate(top):
        m = g_arr == g
        ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(i % cmap.N), label=f"{g} ({counts[g]})")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=6, markerscale=2, loc="best", framealpha=0.7)


def plot_projection(feats: np.ndarray, records: Sequence[Any], scheme: str, path: Path, title: str = "") -> Path | None:
    """PCA to 2-D of L2-normalised features, coloured by class (left) and source (right)."""
    from sklearn.decomposition import PCA

    from embed.metrics import l2_normalize
    from embed.labels import label_of

    if len(feats) < 3:
        return None
    xy = PCA(n_components=2, random_state=0).fit_transform(l2_normalize(feats))
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    classes = [label_of(r, scheme) or "unlabelled" for r in records]
    _scatter(axes[0], xy, classes, "by finding class")
    _scatter(axes[1], xy, [r.source for r in records], "by source")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
