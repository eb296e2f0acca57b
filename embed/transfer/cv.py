"""Patient-grouped cross-validation and a patient-level bootstrap of the AUC.

Groups are a required argument everywhere: there is no way to call these
functions that could put one patient's images in both a training and a test
fold. The AUC is computed once over the pooled out-of-fold predictions (not
averaged over folds), and its 95 % interval comes from resampling *patients*
with replacement, so a patient's correlated images move together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from embed.errors import CXRError

log = logging.getLogger(__name__)


class TooFewSamplesError(CXRError):
    """Not enough patients or events for the requested cross-validation."""

    code = "too_few_samples"


@dataclass
class CVResult:
    """Out-of-fold probabilities, the fold of each row, and the model fitted on each fold."""

    oof: np.ndarray                 # P(y=1) for each row, predicted by the fold that held it out
    fold: np.ndarray                # fold index of each row (the fold it was a test row in)
    models: list = field(default_factory=list)
    train_indices: list = field(default_factory=list)
    test_indices: list = field(default_factory=list)


def patient_folds(y: np.ndarray, groups: np.ndarray, *, folds: int = 5, seed: int = 0
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, test_idx) pairs from StratifiedGroupKFold; checks every patient lands in one test fold."""
    if groups is None:
        raise TooFewSamplesError("groups (one patient id per row) are required: CV must never split a patient")
    y = np.asarray(y)
    groups = np.asarray(groups)
    if len(groups) != len(y):
        raise TooFewSamplesError("groups must give one patient id per row")
    n_groups = len(np.unique(groups))
    pos_groups = len(np.unique(groups[y == 1]))
    neg_groups = len(np.unique(groups[y == 0]))
    if folds < 2:
        raise TooFewSamplesError(f"--folds must be at least 2 (got {folds})")
    if min(pos_groups, neg_groups) < folds:
        raise TooFewSamplesError(
            f"too few patients per class for {folds}-fold CV: {pos_groups} positive and {neg_groups} negative "
            f"patients (each class needs at least one per fold); use --folds {max(2, min(pos_groups, neg_groups))} "
            "or a target with more events"
        )
    if n_groups < folds:
        raise TooFewSamplesError(f"only {n_groups} patients for {folds} folds; lower --folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(y)), y, groups))
    seen: dict = {}
    for k, (train, test) in enumerate(splits):
        overlap = set(groups[train]) & set(groups[test])
        if overlap:  # pragma: no cover - guaranteed by StratifiedGroupKFold; kept as a hard check
            raise RuntimeError(f"patient leakage in fold {k}: {sorted(overlap)[:3]}")
        for g in set(groups[test]):
            if g in seen:  # pragma: no cover
                raise RuntimeError(f"patient {g} in test folds {seen[g]} and {k}")
            seen[g] = k
    return splits


def cross_validated_predictions(
    make_model: Callable[[], object],
    X,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
) -> CVResult:
    """Fit a fresh clone of ``make_model()`` on each training fold; predict its test fold."""
    y = np.asarray(y).astype(int)
    splits = patient_folds(y, groups, folds=folds, seed=seed)
    oof = np.full(len(y), np.nan)
    fold_of = np.full(len(y), -1)
    result = CVResult(oof=oof, fold=fold_of)
    for k, (train, test) in enumerate(splits):
        model = clone(make_model())
        Xtr = X.iloc[train] if hasattr(X, "iloc") else X[train]
        Xte = X.iloc[test] if hasattr(X, "iloc") else X[test]
        model.fit(Xtr, y[train])
        oof[test] = model.predict_proba(Xte)[:, 1]
        fold_of[test] = k
        result.models.append(model)
        result.train_indices.append(train)
        result.test_indices.append(test)
    return result


def bootstrap_auc(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    groups: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    pairs: list[tuple[str, str]] | None = None,
) -> dict:
    """Point AUC and a percentile 95 % interval per score, resampling patients; paired AUC differences too.

    All scores share the same resamples, so ``pairs`` (a, b) give intervals for
    AUC(a) - AUC(b). Resamples with a single class are skipped and counted.
    """
    y = np.asarray(y).astype(int)
    groups = np.asarray(groups)
    uniq, codes = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(codes == i) for i in range(len(uniq))]
    rng = np.random.default_rng(seed)
    names = list(scores)
    boots: dict[str, list[float]] = {n: [] for n in names}
    skipped = 0
    for _ in range(n_boot):
        pick = rng.integers(0, len(uniq), size=len(uniq))
        idx = np.concatenate([members[i] for i in pick])
        yb = y[idx]
        if yb.min() == yb.max():
            skipped += 1
            continue
        for n in names:
            boots[n].append(roc_auc_score(yb, scores[n][idx]))
    out: dict = {"n_boot": n_boot, "skipped_single_class": skipped, "auc": {}, "difference": {}}
    for n in names:
        b = np.asarray(boots[n])
        lo, hi = (np.percentile(b, [2.5, 97.5]) if len(b) else (np.nan, np.nan))
        out["auc"][n] = {"auc": float(roc_auc_score(y, scores[n])), "ci_low": float(lo), "ci_high": float(hi)}
    for a, b_name in pairs or []:
        d = np.asarray(boots[a]) - np.asarray(boots[b_name])
        lo, hi = (np.percentile(d, [2.5, 97.5]) if len(d) else (np.nan, np.nan))
        point = out["auc"][a]["auc"] - out["auc"][b_name]["auc"]
        out["difference"][f"{a} - {b_name}"] = {"delta": float(point), "ci_low": float(lo), "ci_high": float(hi),
                                                "share_above_0": float((d > 0).mean()) if len(d) else None}
    return out
