"""kNN vote and prognosis summary against hand computations."""

from __future__ import annotations

import pytest

from index.schemas import CaseRow, Hit
from embed.vote import vote_weights
from index.voting import knn_vote, prognosis_summary


def hit(sim: float, findings: list[str], prognosis: dict | None = None, i: int = 0) -> Hit:
    return Hit(case=CaseRow(id=i, sha256="x", source="s", findings=findings, prognosis=prognosis or {}),
               similarity=sim, rank=i + 1)


def test_vote_hand_computed():
    hits = [hit(0.9, ["Pneumonia", "Effusion"]), hit(0.6, ["Pneumonia"]), hit(0.3, ["No Finding"])]
    vote = knn_vote(hits)
    total = 0.9 + 0.6 + 0.3
    assert vote["Pneumonia"] == pytest.approx(1.5 / total)
    assert vote["Effusion"] == pytest.approx(0.9 / total)
    assert vote["No Finding"] == pytest.approx(0.3 / total)
    assert list(vote) == ["Pneumonia", "Effusion", "No Finding"]  # highest first


def test_negative_similarities_get_no_weight():
    hits = [hit(0.5, ["A"]), hit(-0.4, ["B"])]
    assert knn_vote(hits) == {"A": 1.0, "B": 0.0}  # B is listed, with no weight
    assert vote_weights([-0.2, -0.5]).tolist() == [1.0, 1.0]  # all negative: equal weights
    assert knn_vote([hit(-0.2, ["A"]), hit(-0.5, ["B"])]) == {"A": 0.5, "B": 0.5}
    assert knn_vote([]) == {}


def test_duplicate_finding_counts_once():
    assert knn_vote([hit(0.5, ["A", "A"]), hit(0.5, ["B"])]) == {"A": 0.5, "B": 0.5}


def test_prognosis_summary():
    hits = [hit(0.9, [], {"survival": True, "went_icu": False}), hit(0.8, [], {"survival": False}),
            hit(0.7, [], {"survival": True, "went_icu": None}), hit(0.6, [])]
    s = prognosis_summary(hits)
    assert s["survival"].known == 3 and s["survival"].positive == 2
    assert s["survival"].share == pytest.approx(2 / 3)
    assert s["went_icu"].known == 1 and s["went_icu"].positive == 0 and s["went_icu"].share == 0.0
    assert s["intubated"].known == 0 and s["intubated"].share is None


@pytest.mark.parametrize("layout", ["random", "all_anti_similar"])
def test_api_vote_is_the_evaluation_vote(layout):
    """The same neighbours through the API's path (hits -> index.voting.knn_vote) and through
    `cxr evaluate`'s path (embeddings -> embed.metrics.knn_vote_scores) give the same numbers."""
    import numpy as np

    from embed.metrics import iter_rankings, knn_vote_scores

    rng = np.random.default_rng(7)
    names = ["Effusion", "No Finding", "Pneumonia"]
    ref, query = rng.normal(size=(40, 8)), rng.normal(size=(6, 8))
    if layout == "all_anti_similar":  # every neighbour points away: the unweighted fallback
        ref, query = np.abs(ref), -np.abs(query)
    multi_hot = rng.random((40, 3)) < 0.4
    k = 7
    evaluation = knn_vote_scores(query, ref, multi_hot, k=k)
    # the neighbours the evaluation ranked, handed to the API's vote as search hits
    [(idx, ranking)] = list(iter_rankings(query, ref, top=k))
    for i in idx:
        hits = [Hit(case=CaseRow(id=int(j), sha256=str(j), source="s",
                                 findings=[n for c, n in enumerate(names) if multi_hot[j, c]]),
                    similarity=float(sim), rank=rank + 1)
                for rank, (j, sim) in enumerate(zip(ranking.order[i], ranking.sims[i]))]
        if layout == "all_anti_similar":
            assert all(h.similarity < 0 for h in hits)
        api = knn_vote(hits)
        assert [api.get(n, 0.0) for n in names] == pytest.approx(evaluation[i].tolist(), abs=1e-12)
    assert evaluation.max() > 0 and evaluation.min() < 1  # the vote is not trivially constant
