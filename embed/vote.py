"""The kNN vote: the one rule that the API serves and that ``cxr evaluate`` and training score.

Over a query's neighbours, weights ``w_j = max(sim_j, 0)`` (a neighbour pointing away
from the query, similarity < 0, is evidence of nothing, so it gets no say); when every
weight is 0 (all neighbours anti-similar) each neighbour gets weight 1 so the vote is
still defined. Multi-label: class ``c`` scores ``sum_j w_j * y_jc / sum_j w_j`` where
``y_j`` is the neighbour's multi-hot class vector (a case with findings [A, B] votes for
both), so scores are independent probabilities in [0, 1], not a distribution summing
to 1. ``index.voting`` applies it to a search's hits, ``embed.metrics`` to whole
evaluation sets: the AUC in docs/results.md is measured with the rule the API serves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def vote_weights(similarities: Sequence[float] | np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Weights of the neighbours, float64 with the shape of ``similarities`` ([k] or [n, k]).

    ``valid`` (same shape, bool) marks real neighbours; the others (padding past the last
    neighbour a query has) weigh 0 and are not counted in the all-anti-similar fallback.
    """
    s = np.asarray(similarities, dtype=np.float64)
    ok = np.ones(s.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    w = np.where(ok, np.clip(s, 0.0, None), 0.0)
    flat = w.sum(axis=-1) <= 0  # every neighbour anti-similar (or none): unweighted vote
    if s.ndim == 1:
        return ok.astype(np.float64) if flat else w
    w[flat] = ok[flat].astype(np.float64)
    return w


def vote_scores(similarities: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Scores per class, float64 [n, C], of ``n`` queries from their neighbours (see module doc).

    ``similarities`` [n, k]; ``labels`` [n, k, C] multi-hot classes of those neighbours;
    ``valid`` [n, k] marks real neighbours. A query without any neighbour scores 0.
    """
    w = vote_weights(similarities, valid)
    y = np.asarray(labels, dtype=np.float64)
    if w.ndim != 2 or y.ndim != 3 or y.shape[:2] != w.shape:
        raise ValueError(f"similarities {w.shape} and labels {y.shape} do not describe the same neighbours")
    total = np.maximum(w.sum(axis=1), 1e-12)
    return np.einsum("nk,nkc->nc", w, y) / total[:, None]
