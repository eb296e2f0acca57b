"""Retrieval and kNN-vote metrics: hand-computed examples, a brute-force loop, and PML."""

from __future__ import annotations

import numpy as np
import pytest

from embed.metrics import knn_vote_auc, knn_vote_scores, retrieval_metrics, roc_auc

A, B, C = 0, 1, 2

# Reference set, 2-D so every cosine is obvious.
REF = np.array([[1, 0], [1, 0], [0, 1], [-1, 0]], dtype=np.float32)
REF_CLS = [A, B, A, B]
REF_PAT = ["p1", "p2", "p3", "p4"]


def test_retrieval_hand_example_with_tie_exclusion_absent_and_unlabelled():
    q = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    q_cls = [A, B, C, -1]
    q_pat = ["p2", "p9", "p9", None]
    m = retrieval_metrics(q, q_cls, REF, REF_CLS, query_patients=q_pat, ref_patients=REF_PAT)
    # q0 (class A, patient p2: r1 excluded): ranking r0(1) r2(0) r3(-1); relevant r0, r2; R=2
    q0 = dict(p1=1.0, p10=2 / 3, mapr=(1 / 1 + 2 / 2) / 2, map10=(1 / 1 + 2 / 2) / 2)
    # q1 (class B): tie r0 = r1 = 1 broken by index -> r0 r1 r2 r3; relevant r1, r3; R=2
    q1 = dict(p1=0.0, p10=2 / 4, mapr=(1 / 2) / 2, map10=(1 / 2 + 2 / 4) / 2)
    assert m["n_queries"] == 2 and m["n_absent_class"] == 1 and m["n_unlabelled"] == 1
    assert m["p_at_1"] == pytest.approx((q0["p1"] + q1["p1"]) / 2)
    assert m["p_at_10"] == pytest.approx((q0["p10"] + q1["p10"]) / 2)
    assert m["map_at_r"] == pytest.approx((q0["mapr"] + q1["mapr"]) / 2)
    assert m["map_at_10"] == pytest.approx((q0["map10"] + q1["map10"]) / 2)


def test_same_patient_exclusion_changes_the_answer():
    q = np.array([[1, 0]], dtype=np.float32)
    with_excl = retrieval_metrics(q, [B], REF, REF_CLS, query_patients=["p2"], ref_patients=REF_PAT)
    without = retrieval_metrics(q, [B], REF, REF_CLS)
    # Without exclusion r1 (class B) is 2nd; with it, r1 is gone and only r3 (last) is relevant.
    assert without["map_at_r"] == pytest.approx(0.25)
    assert with_excl["map_at_r"] == pytest.approx(0.0)  # R=1, first neighbour r0 wrong
    assert with_excl["p_at_10"] == pytest.approx(1 / 3)


def test_leave_one_out_never_scores_itself():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    m = retrieval_metrics(x, [A, B, A], query_patients=["a", "b", "c"])
    # each query's nearest other image has the other class (or, for x2, only x0 is A at rank 2)
    assert m["p_at_1"] == pytest.approx(0.0)
    assert m["n_absent_class"] == 1  # x1 is the only B: nothing to retrieve


def test_knn_vote_hand_example_multilabel_and_clipping():
    ref_y = np.array([[1, 0], [1, 1], [1, 0], [0, 1]], dtype=bool)  # r1 has findings [A, B]
    q = np.array([[1, 0], [1, 0], [-1, 0], [0, -1]], dtype=np.float32)
    s = knn_vote_scores(q, REF, ref_y, query_patients=["p2", "x", "x", "x"], ref_patients=REF_PAT, k=2)
    np.testing.assert_allclose(s[0], [1.0, 0.0])  # r0 (w 1), r2 (w 0); r1 excluded
    np.testing.assert_allclose(s[1], [1.0, 0.5])  # r0, r1 both w 1; r1 votes A and B
    np.testing.assert_allclose(s[2], [0.0, 1.0])  # r3 (w 1), r2 (w 0)
    np.testing.assert_allclose(s[3], [1.0, 0.5])  # r0, r1 with sim 0: unweighted fallback


def test_roc_auc_hand_example_with_tie():
    # pairs: 0.9>0.5, 0.9>0.1, 0.5=0.5 (half), 0.5>0.1 -> 3.5 / 4
    assert roc_auc([1, 0, 1, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx(0.875)
    assert roc_auc([1, 1], [0.1, 0.2]) is None


def test_knn_vote_auc_per_class_against_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(40, 8)), rng.normal(size=(60, 8))
    qy, ry = rng.integers(0, 3, 40), rng.integers(0, 3, 60)
    aucs, scores, truth = knn_vote_auc(q, qy, r, ry, class_names=["a", "b", "c"], return_scores=True)
    for j, name in enumerate("abc"):
        assert aucs[name] == pytest.approx(roc_auc_score(truth[:, j], scores[:, j]))
    assert aucs["macro"] == pytest.approx(np.mean([aucs[n] for n in "abc"]))


# --- brute force -------------------------------------------------------------------


def _brute(q, ql, qp, r, rl, rp, same_set, k_vote, y_ref):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    rn = r / np.linalg.norm(r, axis=1, keepdims=True)
    sims = (qn.astype(np.float32) @ rn.astype(np.float32).T).astype(np.float64)
    p1, p10, m10, mr, votes = [], [], [], [], []
    for i in range(len(q)):
        cand = [j for j in range(len(r)) if not (same_set and i == j) and not (qp[i] is not None and qp[i] == rp[j])]
        cand.sort(key=lambda j: (-sims[i, j], j))
        # vote
        top = cand[:k_vote]
        w = [max(sims[i, j], 0.0) for j in top]
        if sum(w) == 0:
            w = [1.0] * len(top)
        votes.append([sum(wj * y_ref[j][c] for wj, j in zip(w, top)) / max(sum(w), 1e-12) for c in range(y_ref.shape[1])])
        if ql[i] < 0:
            continue
        rel = [rl[j] == ql[i] for j in cand]
        big_r = sum(rel)
        if big_r == 0:
            continue
        p1.append(float(rel[0]))
        p10.append(sum(rel[:10]) / min(10, len(cand)))
        hits, ap_r, ap_10 = 0, 0.0, 0.0
        for pos, is_rel in enumerate(rel):
            if is_rel:
                hits += 1
                if pos < big_r:
                    ap_r += hits / (pos + 1)
                if pos < 10:
                    ap_10 += hits / (pos + 1)
        mr.append(ap_r / big_r)
        m10.append(ap_10 / min(10, big_r))
    return dict(p_at_1=np.mean(p1), p_at_10=np.mean(p10), map_at_10=np.mean(m10), map_at_r=np.mean(mr)), np.array(votes)


@pytest.mark.parametrize("same_set", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_brute_force_loop(seed, same_set):
    rng = np.random.default_rng(seed)
    n_q, n_r, d = 37, 53, 5
    # integer-valued vectors from a small set make exact similarity ties common
    r = rng.integers(-1, 2, size=(n_r, d)).astype(np.float32)
    r[np.abs(r).sum(1) == 0, 0] = 1
    rl = rng.integers(-1, 4, n_r)
    rp = [None if rng.random() < 0.1 else f"p{rng.integers(0, 15)}" for _ in range(n_r)]
    if same_set:
        q, ql, qp = r, rl, rp
    else:
        q = rng.integers(-1, 2, size=(n_q, d)).astype(np.float32)
        q[np.abs(q).sum(1) == 0, 0] = 1
        ql = rng.integers(-1, 5, n_q)  # class 4 never in the reference
        qp = [None if rng.random() < 0.1 else f"p{rng.integers(0, 15)}" for _ in range(n_q)]
    y_ref = rng.random((n_r, 3)) < 0.4
    want, want_votes = _brute(q, ql, qp, r, rl, rp, same_set, 4, y_ref)
    if same_set:
        got = retrieval_metrics(q, ql, query_patients=qp)
        votes = knn_vote_scores(q, None, y_ref, query_patients=qp, k=4)
    else:
        got = retrieval_metrics(q, ql, r, rl, query_patients=qp, ref_patients=rp)
        votes = knn_vote_scores(q, r, y_ref, query_patients=qp, ref_patients=rp, k=4)
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    np.testing.assert_allclose(votes, want_votes, atol=1e-9)


def test_against_pytorch_metric_learning():
    import torch
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    rng = np.random.default_rng(3)
    q, r = rng.normal(size=(50, 6)).astype(np.float32), rng.normal(size=(80, 6)).astype(np.float32)
    ql, rl = rng.integers(0, 4, 50), rng.integers(0, 4, 80)
    ours = retrieval_metrics(q, ql, r, rl, ks=(1, 10), map_k=10)
    qn = torch.nn.functional.normalize(torch.from_numpy(q), dim=1)
    rn = torch.nn.functional.normalize(torch.from_numpy(r), dim=1)
    calc = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k="max_bin_count")
    pml = calc.get_accuracy(qn, torch.from_numpy(ql), rn, torch.from_numpy(rl), ref_includes_query=False)
    assert ours["p_at_1"] == pytest.approx(pml["precision_at_1"], abs=1e-6)
    assert ours["map_at_r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-6)
    # PML's MAP@10 divides by R instead of min(10, R): rescale ours per query to compare.
    calc10 = AccuracyCalculator(include=("mean_average_precision",), k=10)
    pml10 = calc10.get_accuracy(qn, torch.from_numpy(ql), rn, torch.from_numpy(rl), ref_includes_query=False)
    big_r = np.array([(rl == c).sum() for c in ql])
    per_query = [
        retrieval_metrics(q[i : i + 1], ql[i : i + 1], r, rl)["map_at_10"] * min(10, big_r[i]) / big_r[i]
        for i in range(len(q))
    ]
    assert np.mean(per_query) == pytest.approx(pml10["mean_average_precision"], abs=1e-6)
