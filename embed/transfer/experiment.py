"""One transfer experiment: features file + target -> CV predictions, AUCs, intervals, plots, report."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embed.transfer.cv import bootstrap_auc, cross_validated_predictions
from embed.transfer.data import TransferData, features_metadata, prepare, read_features_file
from embed.transfer.model import ModelConfig, build_pipeline, kinds_for

log = logging.getLogger(__name__)


@dataclass
class TransferResult:
    """Everything the report needs; ``summary`` is the JSON-ready part."""

    data: TransferData
    scores: dict[str, np.ndarray]
    summary: dict
    files: dict[str, str] = field(default_factory=dict)


def run_transfer(
    features: str | Path,
    target: str,
    tabular: list[str] | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    aggregate: str = "first",
    frontal_only: bool = True,
    exclude_if: list[str] | None = None,
    cfg: ModelConfig | None = None,
) -> TransferResult:
    """Fit image / tabular / image+tabular models with patient-grouped CV and bootstrap their AUCs."""
    cfg = cfg or ModelConfig()
    df, emb = read_features_file(features)
    data = prepare(df, emb, target, tabular, aggregate=aggregate, frontal_only=frontal_only,
                   exclude_if=exclude_if)
    log.info("%s: %d rows, %d patients, %d positive rows (%d dropped: unknown target)", target,
             data.counts["rows"], data.counts["patients"], data.counts["positives"],
             data.counts["dropped_unknown_target"])
    kinds = kinds_for(bool(data.tabular_columns))
    scores: dict[str, np.ndarray] = {}
    per_fold: dict[str, list[float]] = {}
    fold_sizes: list[dict] = []
    for kind in kinds:
        def make(kind=kind):
            return build_pipeline(kind, data.image_columns, data.numeric_columns, data.categorical_columns, cfg)

        res = cross_validated_predictions(make, data.X, data.y, data.groups, folds=folds, seed=seed)
        scores[kind] = res.oof
        per_fold[kind] = [_safe_auc(data.y[t], res.oof[t]) for t in res.test_indices]
        if not fold_sizes:
            fold_sizes = [{"patients": int(len(np.unique(data.groups[t]))), "positives": int(data.y[t].sum())}
                          for t in res.test_indices]
    pairs = [("image+tabular", "tabular")] if "image+tabular" in scores else []
    boot = bootstrap_auc(data.y, scores, data.groups, n_boot=n_boot, seed=seed, pairs=pairs)
    summary = {
        "target": target,
        "positive_class": f"{target} = True",
        "features_file": str(features),
        "features_metadata": features_metadata(features),
        "tabular": list(tabular or []),
        "tabular_encoded": data.tabular_columns,
        "aggregate": aggregate,
        "frontal_only": frontal_only,
        "exclude_if": list(exclude_if or []),
        "folds": folds,
        "seed": seed,
        "model": cfg.to_dict(),
        "embedding_dim": len(data.image_columns),
        "counts": data.counts,
        "fold_sizes": fold_sizes,
        "bootstrap": {"n_boot": n_boot, "unit": "patient", "interval": "percentile 95%",
                      "skipped_single_class": boot["skipped_single_class"]},
        "results": {k: {**boot["auc"][k], "per_fold_auc": per_fold[k],
                        "brier": float(np.mean((scores[k] - data.y) ** 2))} for k in kinds},
        "differences": boot["difference"],
    }
    return TransferResult(data=data, scores=scores, summary=summary)


def _safe_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else None
