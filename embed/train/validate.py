"""Validation metrics for a training run: P@1, MAP@R and kNN-vote AUC, from :mod:`embed.metrics`.

The same functions ``cxr evaluate`` reports with, leave-one-out within the validation
set: a query never sees itself nor any image of its own patient, so a patient's
follow-up film can neither be retrieved for it nor vote for it. (Until issue 10 P@1 and
MAP@R came from pytorch-metric-learning's ``AccuracyCalculator``, which has no patient
exclusion; docs/results.md says what that changes.)
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from embed.metrics import knn_vote_scores, retrieval_metrics, roc_auc

log = logging.getLogger(__name__)


def macro_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean one-vs-rest ROC AUC over classes that have positives and negatives."""
    aucs = [roc_auc(labels == c, scores[:, c]) for c in range(scores.shape[1])]
    defined = [a for a in aucs if a is not None]
    return float(np.mean(defined)) if defined else None


def validation_metrics(
    emb: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    sources: Sequence[str],
    n_classes: int,
    k: int = 10,
    class_names: Sequence[str] | None = None,
) -> dict[str, float | None | dict]:
    """precision_at_1, mean_average_precision_at_r, knn_auc (macro) and knn_auc per source."""
    if len(emb) < 3:
        return {"precision_at_1": None, "mean_average_precision_at_r": None, "knn_auc": None}
    ret = retrieval_metrics(emb, labels, query_patients=list(groups), ks=(1,))
    scores = knn_vote_scores(emb, None, labels, query_patients=list(groups), k=k, n_classes=n_classes)
    out: dict[str, float | None | dict] = {
        "precision_at_1": ret["p_at_1"],
        "mean_average_precision_at_r": ret["map_at_r"],
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
    res = {}
    for c in range(scores.shape[1]):
        auc = roc_auc(labels == c, scores[:, c])
        if auc is not None:
            name = class_names[c] if class_names is not None else str(c)
            res[name] = round(auc, 4)
    return res
