"""kNN vote and prognosis summary against hand computations."""

from __future__ import annotations

import pytest

from index.schemas import CaseRow, Hit
from index.voting import knn_vote, prognosis_summary, vote_weights


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
