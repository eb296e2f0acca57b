"""Retrieval and kNN-vote metrics in plain numpy, with a same-patient exclusion.

The one implementation: ``cxr evaluate`` and the validation step of ``cxr train`` both
score with these functions (below both :mod:`embed.train` and :mod:`embed.evaluate`).

Definitions (Musgrave et al., "A Metric Learning Reality Check", 2020, and
pytorch-metric-learning's ``AccuracyCalculator``), on cosine similarity of
L2-normalised embeddings:

* **Exclusion.** A query never sees a reference of its own patient (follow-up
  images of one patient would otherwise be trivially "similar"), and, when the
  query set *is* the reference set (``same_set=True``), never itself. Patients
  that are ``None`` are unknown and only excluded from themselves.
* **Order.** References are ranked by similarity, ties broken by the smaller
  reference index (stable sort), so results never depend on the platform.
* **Relevance.** A reference is relevant when its class equals the query's class.
  Class ``-1`` means "no class" (e.g. unlabelled): such a query is not scored, such
  a reference is never relevant.
* ``R`` = number of relevant references left after exclusion. A query with
  ``R == 0`` (its class is absent from the references) cannot be scored by any
  retrieval metric and is skipped from all four, as AccuracyCalculator does for
  "lone" query labels; the count is returned as ``n_absent_class``.
* **P@k** = relevant among the first ``k`` neighbours / ``min(k, n_valid)``
  (``n_valid``: references left after exclusion).
* **MAP@R** = mean over queries of ``(1/R) * sum_{i<=R} P(i) * rel(i)`` (Musgrave).
* **mAP@k** = mean over queries of ``sum_{i<=k} P(i) * rel(i) / min(k, R)``: the
  average precision of the first ``k`` results, normalised by the best that ``k``
  results could reach. (AccuracyCalculator's ``mean_average_precision`` divides by
  ``R`` instead, which punishes large classes; ours times ``min(k,R)/R`` equals it.)
* **kNN vote**: :mod:`embed.vote` (the rule the API serves) over the first ``k``
  neighbours left after exclusion; scores are in
  [0, 1]. **AUC per class** is the ROC AUC of that score against the query's own
  multi-hot truth; ``None`` when the queries hold only one of the two outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np

from embed.vote import vote_scores

#: Queries processed together: bounds memory at CHUNK x n_references floats.
CHUNK = 256


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _patients(p: Sequence | None, n: int) -> np.ndarray | None:
    if p is None:
        return None
    arr = np.asarray([None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in p], dtype=object)
    if len(arr) != n:
        raise ValueError(f"got {len(arr)} patients for {n} embeddings")
    return arr


def _exclusion_mask(
    q_idx: np.ndarray,
    q_pat: np.ndarray | None,
    r_pat: np.ndarray | None,
    n_ref: int,
    same_set: bool,
) -> np.ndarray:
    """Boolean [len(q_idx), n_ref]: True where the reference must not be seen by the query."""
    mask = np.zeros((len(q_idx), n_ref), dtype=bool)
    if q_pat is not None and r_pat is not None:
        qp = q_pat[q_idx]
        known = np.array([p is not None for p in qp])
        if known.any():
            mask[known] = qp[known][:, None] == r_pat[None, :]
    if same_set:
        mask[np.arange(len(q_idx)), q_idx] = True
    return mask


@dataclass
class Ranking:
    """Neighbours of a chunk of queries: ``order`` [n, m] reference indices best first,
    ``sims`` [n, m] their similarities, ``n_valid`` [n] how many are not excluded
    (entries at positions >= n_valid are excluded references, to be ignored)."""

    order: np.ndarray
    sims: np.ndarray
    n_valid: np.ndarray


def iter_rankings(
    query: np.ndarray,
    reference: np.ndarray,
    *,
    query_patients: Sequence | None = None,
    ref_patients: Sequence | None = None,
    same_set: bool = False,
    top: int | None = None,
    chunk: int = CHUNK,
):
    """Yield ``(query_indices, Ranking)`` per chunk, ``top`` neighbours (all when None)."""
    q = l2_normalize(query)
    r = l2_normalize(reference)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"query dim {q.shape[1]} != reference dim {r.shape[1]}")
    if same_set and len(q) != len(r):
        raise ValueError("same_set=True needs the query set to be the reference set")
    qp = _patients(query_patients, len(q))
    rp = _patients(ref_patients, len(r))
    n_ref = len(r)
    m = n_ref if top is None else min(top, n_ref)
    for start in range(0, len(q), chunk):
        idx = np.arange(start, min(start + chunk, len(q)))
        sims = (q[idx] @ r.T).astype(np.float64)
        excl = _exclusion_mask(idx, qp, rp, n_ref, same_set)
        sims[excl] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :m]
        top_sims = np.take_along_axis(sims, order, axis=1)
        n_valid = np.minimum((~excl).sum(axis=1), m)
        yield idx, Ranking(order=order, sims=top_sims, n_valid=n_valid)


def retrieval_metrics(
    query: np.ndarray,
    query_labels: Sequence[int],
    reference: np.ndarray | None = None,
    ref_labels: Sequence[int] | None = None,
    *,
    query_patients: Sequence | None = None,
    ref_patients: Sequence | None = None,
    ks: Sequence[int] = (1, 10),
    map_k: int = 10,
) -> dict[str, float | int | None]:
    """P@k for each k, mAP@map_k and MAP@R (see module doc). ``reference=None``: leave-one-out.

    Returns keys ``p_at_<k>``, ``map_at_<map_k>``, ``map_at_r`` (None when no query
    could be scored), ``n_queries`` (scored), ``n_absent_class``, ``n_unlabelled``.
    """
    same_set = reference is None
    if same_set:
        reference, ref_labels, ref_patients = query, query_labels, query_patients
    ql = np.asarray(query_labels, dtype=np.int64)
    rl = np.asarray(ref_labels, dtype=np.int64)
    if len(ql) != len(query) or len(rl) != len(reference):
        raise ValueError("labels and embeddings differ in length")
    sums = {f"p_at_{k}": 0.0 for k in ks}
    sums[f"map_at_{map_k}"] = 0.0
    sums["map_at_r"] = 0.0
    n_scored = n_absent = n_unlab = 0
    for idx, rk in iter_rankings(
        query, reference, query_patients=query_patients, ref_patients=ref_patients, same_set=same_set
    ):
        labels = ql[idx]
        pos = np.arange(rk.order.shape[1])
        valid = pos[None, :] < rk.n_valid[:, None]
        rel = (rl[rk.order] == labels[:, None]) & valid & (labels[:, None] >= 0)
        big_r = rel.sum(axis=1)  # all relevant references survive in the full ranking
        unlab = labels < 0
        absent = (~unlab) & (big_r == 0)
        n_unlab += int(unlab.sum())
        n_absent += int(absent.sum())
        ok = ~(unlab | absent)
        if not ok.any():
            continue
        rel, big_r, n_valid = rel[ok], big_r[ok], rk.n_valid[ok]
        n_scored += int(ok.sum())
        cum = np.cumsum(rel, axis=1)
        prec = cum / (pos[None, :] + 1.0)
        for k in ks:
            sums[f"p_at_{k}"] += float((cum[:, min(k, rel.shape[1]) - 1] / np.minimum(k, n_valid)).sum())
        hit_prec = prec * rel
        in_r = pos[None, :] < big_r[:, None]
        sums["map_at_r"] += float(((hit_prec * in_r).sum(axis=1) / big_r).sum())
        in_k = pos[None, :] < map_k
        sums[f"map_at_{map_k}"] += float(((hit_prec * in_k).sum(axis=1) / np.minimum(map_k, big_r)).sum())
    out: dict[str, float | int | None] = {
        k: (v / n_scored if n_scored else None) for k, v in sums.items()
    }
    out.update(n_queries=n_scored, n_absent_class=n_absent, n_unlabelled=n_unlab)
    return out


def _as_multihot(labels: np.ndarray | Sequence, n_classes: int | None) -> np.ndarray:
    """Accept class indices [N] (-1 = none) or a multi-hot matrix [N, C]; return bool [N, C]."""
    arr = np.asarray(labels)
    if arr.ndim == 2:
        return arr.astype(bool)
    arr = arr.astype(np.int64)
    c = int(n_classes if n_classes is not None else (arr.max() + 1 if len(arr) else 0))
    out = np.zeros((len(arr), c), dtype=bool)
    ok = arr >= 0
    out[np.nonzero(ok)[0], arr[ok]] = True
    return out


def knn_vote_scores(
    query: np.ndarray,
    reference: np.ndarray | None,
    ref_labels: np.ndarray | Sequence,
    *,
    query_patients: Sequence | None = None,
    ref_patients: Sequence | None = None,
    k: int = 10,
    n_classes: int | None = None,
) -> np.ndarray:
    """Similarity-weighted kNN vote per class, float64 [n_query, C] in [0, 1] (module doc).

    ``reference=None`` votes leave-one-out within the query set (``ref_labels`` then
    labels the queries). Queries with no neighbour left after exclusion score 0.
    """
    same_set = reference is None
    if same_set:
        reference, ref_patients = query, query_patients
    y = _as_multihot(ref_labels, n_classes).astype(np.float64)
    if len(y) != len(reference):
        raise ValueError("ref_labels and reference differ in length")
    scores = np.zeros((len(query), y.shape[1]), dtype=np.float64)
    for idx, rk in iter_rankings(
        query, reference, query_patients=query_patients, ref_patients=ref_patients, same_set=same_set, top=k
    ):
        valid = np.arange(rk.order.shape[1])[None, :] < rk.n_valid[:, None]
        scores[idx] = vote_scores(rk.sims, y[rk.order], valid)
    return scores


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC with ties counted half (Mann-Whitney); None when only one outcome is present."""
    truth = np.asarray(truth, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(score)  # average ranks: ties count half
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def knn_vote_auc(
    query: np.ndarray,
    query_labels: np.ndarray | Sequence,
    reference: np.ndarray | None = None,
    ref_labels: np.ndarray | Sequence | None = None,
    *,
    query_patients: Sequence | None = None,
    ref_patients: Sequence | None = None,
    k: int = 10,
    class_names: Sequence[str] | None = None,
    return_scores: bool = False,
):
    """Per-class ROC AUC of the kNN vote: ``{class_name: auc | None}`` (plus ``"macro"``).

    Labels are class indices (-1 = none) or multi-hot [N, C]. ``reference=None`` is
    leave-one-out over the queries (with the same-patient exclusion), handy for a
    validation step. ``macro`` is the mean of the defined per-class AUCs.
    With ``return_scores=True`` returns ``(aucs, scores, truth)``.
    """
    n_classes = len(class_names) if class_names is not None else None
    qy = _as_multihot(query_labels, n_classes)
    if reference is None:
        ry = qy
    else:
        ry = _as_multihot(ref_labels, n_classes if n_classes is not None else qy.shape[1])
    c = max(qy.shape[1], ry.shape[1])
    qy = np.pad(qy, ((0, 0), (0, c - qy.shape[1])))
    ry = np.pad(ry, ((0, 0), (0, c - ry.shape[1])))
    names = list(class_names) if class_names is not None else [str(i) for i in range(c)]
    scores = knn_vote_scores(
        query, reference, ry, query_patients=query_patients, ref_patients=ref_patients, k=k
    )
    aucs: dict[str, float | None] = {names[j]: roc_auc(qy[:, j], scores[:, j]) for j in range(c)}
    defined = [v for v in aucs.values() if v is not None]
    aucs["macro"] = float(np.mean(defined)) if defined else None
    if return_scores:
        return aucs, scores, qy
    return aucs


def same_patient_recall(x: np.ndarray, patients: Sequence, ks: Sequence[int] = (1, 5)) -> dict[str, Any]:
    """Look-alikeness: for each film of a patient with several films in ``x``, is another film of the same
    patient among its k nearest neighbours in ``x`` (itself excluded)? Recall@k over those films.

    A similar-case search should return films that *look* alike, and a patient's own follow-up is the
    film that looks most like it; an embedding collapsed to class prototypes scores low here even
    when its P@1 is high. Films without a known patient are neither queries nor counted as matches.
    """
    pats = _patients(patients, len(x))
    assert pats is not None
    counts: dict[str, int] = {}
    for p in pats:
        if p is not None:
            counts[p] = counts.get(p, 0) + 1
    q_idx = np.array([i for i, p in enumerate(pats) if p is not None and counts[p] > 1], dtype=np.int64)
    out: dict[str, Any] = {"n_queries": int(len(q_idx)), "n_patients": int(sum(1 for n in counts.values() if n > 1))}
    if not len(q_idx):
        out.update({f"recall_at_{k}": None for k in ks})
        return out
    v = l2_normalize(np.asarray(x, np.float32))
    top = max(ks)
    hits = {k: 0 for k in ks}
    for start in range(0, len(q_idx), CHUNK):
        idx = q_idx[start:start + CHUNK]
        sims = v[idx] @ v.T
        sims[np.arange(len(idx)), idx] = -np.inf
        order = np.argsort(-sims, axis=1, kind="stable")[:, :top]
        same = pats[order] == pats[idx][:, None]
        for k in ks:
            hits[k] += int(same[:, :k].any(axis=1).sum())
    out.update({f"recall_at_{k}": hits[k] / len(q_idx) for k in ks})
    return out
