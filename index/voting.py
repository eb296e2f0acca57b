"""kNN vote and prognosis summary over the neighbours of a query.

The vote is :func:`embed.vote.vote_scores`, the same function ``cxr evaluate`` scores
(see that module for the rule); this module only turns a search's hits into its inputs
and its output into ``{finding: score}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embed.datasets.base import PROGNOSIS_FIELDS  # one outcome vocabulary for readers and votes
from embed.vote import vote_scores
from index.schemas import Hit, OutcomeSummary


def knn_vote(hits: Sequence[Hit]) -> dict[str, float]:
    """Similarity-weighted, multi-label finding scores of the neighbours, highest first."""
    if not hits:
        return {}
    names = sorted({f for h in hits for f in h.case.findings})
    multi_hot = np.zeros((1, len(hits), len(names)), dtype=bool)
    col = {name: j for j, name in enumerate(names)}
    for i, hit in enumerate(hits):
        for finding in hit.case.findings:
            multi_hot[0, i, col[finding]] = True
    scores = vote_scores(np.array([[h.similarity for h in hits]]), multi_hot)[0]
    return dict(sorted(((f, float(v)) for f, v in zip(names, scores)), key=lambda kv: (-kv[1], kv[0])))


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
