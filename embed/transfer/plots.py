"""ROC and calibration plots of the out-of-fold predictions (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_COLOURS = {"image": "#1f77b4", "tabular": "#ff7f0e", "image+tabular": "#2ca02c"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def roc_plot(y: np.ndarray, scores: dict[str, np.ndarray], aucs: dict, path: str | Path, title: str) -> Path:
    """One ROC curve per model, the AUC and its bootstrap interval in the legend."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        a = aucs[name]
        ax.plot(fpr, tpr, lw=2, c=_COLOURS.get(name),
                label=f"{name}: {a['auc']:.2f} [{a['ci_low']:.2f}, {a['ci_high']:.2f}]")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01), title=title)
    ax.legend(loc="lower right", fontsize=8, title="AUC [95% CI]", title_fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def calibration_plot(y: np.ndarray, scores: dict[str, np.ndarray], path: str | Path, title: str,
                     n_bins: int = 5) -> Path:
    """Reliability diagram (quantile bins, so each point has the same number of cases) and a histogram."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(5, 6), dpi=110, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect calibration")
    bins = max(2, min(n_bins, len(y) // 10))
    for name, s in scores.items():
        frac, mean_pred = calibration_curve(y, s, n_bins=bins, strategy="quantile")
        ax.plot(mean_pred, frac, marker="o", lw=2, c=_COLOURS.get(name), label=name)
        axh.hist(s, bins=20, range=(0, 1), histtype="step", lw=1.5, color=_COLOURS.get(name))
    ax.axhline(float(np.mean(y)), c="black", lw=0.8, ls=":", label=f"prevalence {np.mean(y):.2f}")
    ax.set(ylabel="observed share positive", xlim=(0, 1), ylim=(-0.02, 1.02), title=title)
    ax.legend(loc="upper left", fontsize=8)
    axh.set(xlabel=f"predicted probability (out-of-fold, {bins} quantile bins)", ylabel="cases")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
