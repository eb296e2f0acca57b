"""Validation metrics for a training run: P@1 and MAP@R (pytorch-metric-learning) and kNN-vote AUC.

The kNN vote (``embed.evaluate.metrics.knn_vote_scores``, the evaluation's own) leaves
out the query itself and every image of the same patient, so a patient's follow-up film
cannot vote for it; MAP@R and P@1 come from ``AccuracyCalculator`` as the library
computes them.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)


def macro_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean one-vs-rest ROC AUC over classes that have positives and negatives."""
    from sklearn.metrics import roc_auc_score

    aucs = []
    for c in range(scores.shape[1]):
        y = labels == c
        if 0 < y.sum() < len(y):
            aucs.append(roc_auc_score(y, scores[:, c]))
    return float(np.mean(aucs)) if aucs else None


def retrieval_metrics(
    emb: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    sources: Sequence[str],
    n_classes: int,
    k: int = 10,
    class_names: Sequence[str] | None = None,
) -> dict[str, float | None | dict]:
    """precision_at_1, mean_average_precision_at_r, knn_auc (macro) and knn_auc per source."""
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    if len(emb) < 3:
        return {"precision_at_1": None, "mean_average_precision_at_r": None, "knn_auc": None}
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count")
    t = torch.from_numpy(emb)
    lab = torch.from_numpy(labels)
    acc = calc.get_accuracy(t, lab, t, lab, ref_includes_query=True)
    from embed.evaluate.metrics import knn_vote_scores

    # leave-one-out within the validation set, same-patient neighbours excluded
    scores = knn_vote_scores(emb, None, labels, query_patients=list(groups), k=k, n_classes=n_classes)
    out: dict[str, float | None | dict] = {
        "precision_at_1": float(acc["precision_at_1"]),
        "mean_average_precision_at_r": float(acc["mean_average_precision_at_r"]),
        "knn_auc": macro_auc(scores, labels),
    }
    src = np.asarray(sources)
    per, per_class = {}, {}
    for s in sorted(set(sources)):
        m = src == s
        per[s] = macro_auc(scores[m], labels[m])
        per_class[s] = class_aucs(scores[m], labels[m], class_names)
    out["knn_auc_by_source"] = per
    # e.g. kermany/normal: normal vs the rest of that source (normal vs pneumonia there)
    out["knn_auc_by_source_class"] = per_class
    return out


def class_aucs(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str] | None) -> dict[str, float]:
    """One-vs-rest AUC of each class's vote share, for classes with positives and negatives."""
    from sklearn.metrics import roc_auc_score

    res = {}
    for c in range(scores.shape[1]):
        y = labels == c
        if 0 < y.sum() < len(y):
            name = class_names[c] if class_names is not None else str(c)
            res[name] = round(float(roc_auc_score(y, scores[:, c])), 4)
    return res
