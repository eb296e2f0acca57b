"""kNN vote and prognosis summary over the neighbours of a query.

Vote: each neighbour's weight is its cosine similarity clipped at 0 (a neighbour
pointing away from the query, similarity < 0, is evidence of nothing, so it gets
no say); when every weight is 0 (all neighbours negative), all get equal weight so
the vote is still defined. Multi-label: finding f scores
    sum(weight of neighbours having f) / sum(all weights),
so scores are independent probabilities in [0,1], not a distribution summing to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embed.datasets.base import PROGNOSIS_FIELDS  # one outcome vocabulary for readers and votes
from index.schemas import Hit, OutcomeSummary


def vote_weights(similarities: Sequence[float]) -> np.ndarray:
    """Similarities clipped at 0; uniform when all are <= 0 (see module doc)."""
    s = np.asarray(similarities, dtype=np.float64)
    if len(s) == 0:
        return s
    w = np.clip(s, 0.0, None)
    if w.sum() <= 0:
        w = np.ones_like(s)
    return w


def knn_vote(hits: Sequence[Hit]) -> dict[str, float]:
    """Similarity-weighted, multi-label finding scores of the neighbours, highest first."""
    if not hits:
        return {}
    w = vote_weights([h.similarity for h in hits])
    total = float(w.sum())
    scores: dict[str, float] = {}
    for weight, hit in zip(w, hits):
        for finding in set(hit.case.findings):
            scores[finding] = scores.get(finding, 0.0) + float(weight)
    return dict(sorted(((f, v / total) for f, v in scores.items()), key=lambda kv: (-kv[1], kv[0])))


def prognosis_summary(hits: Sequence[Hit], fields: Sequence[str] = PROGNOSIS_FIELDS) -> dict[str, OutcomeSummary]:
    """For each outcome: neighbours with it recorded, how many positive, and the share positive."""
    keys = list(fields) + sorted({k for h in hits for k in h.case.prognosis} - set(fields))
    out: dict[str, OutcomeSummary] = {}
    for key in keys:
        values = [h.case.prognosis.get(key) for h in hits]
        known = [v for v in values if v is not None]
        positive = sum(1 for v in known if bool(v))
        out[key] = OutcomeSummary(known=len(known), positive=positive, share=(positive / len(known)) if known else None)
    return out
