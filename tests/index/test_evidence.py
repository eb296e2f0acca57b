"""The vote as a hierarchy with its counts, and outcomes counted once per patient."""

from __future__ import annotations

import pytest

from index.evidence import add_patient_counts, vote_hierarchy
from index.schemas import CaseRow, Hit
from index.voting import knn_vote, prognosis_summary

COVID = ["Pneumonia", "Viral Pneumonia", "COVID-19"]


def hit(i: int, sim: float, findings: list[str], patient: str | None = None, day: float | None = None,
        prognosis: dict | None = None) -> Hit:
    return Hit(case=CaseRow(id=i, sha256=str(i), source="s", patient=patient, day_offset=day,
                            findings=findings, prognosis=prognosis or {}), similarity=sim, rank=i)


def test_two_films_of_one_patient_count_once_with_the_latest_outcome():
    hits = [hit(1, 0.9, [], "p_a", day=0, prognosis={"survival": True}),
            hit(2, 0.8, [], "p_a", day=7, prognosis={"survival": False}),  # later film of the same patient
            hit(3, 0.7, [], "p_b", day=1, prognosis={"survival": True}),
            hit(4, 0.6, [], "p_b", day=3, prognosis={"survival": True}),
            hit(5, 0.5, [], "p_c", prognosis={"survival": None})]
    s = add_patient_counts(prognosis_summary(hits), hits)["survival"]
    assert (s.known, s.positive) == (4, 3)  # films, as before
    assert (s.patients_known, s.patients_positive) == (2, 1)  # p_a's latest: died; p_b survived
    assert s.patient_share == pytest.approx(0.5)


def test_films_without_a_patient_are_their_own_patients():
    hits = [hit(1, 0.9, [], None, prognosis={"went_icu": True}), hit(2, 0.9, [], None, prognosis={"went_icu": False})]
    s = add_patient_counts(prognosis_summary(hits), hits)["went_icu"]
    assert (s.patients_known, s.patients_positive) == (2, 1)
    s = add_patient_counts(prognosis_summary([]), [])["survival"]
    assert s.patients_known == 0 and s.patient_share is None


def test_vote_hierarchy_indents_children_under_their_parents_with_counts():
    hits = [hit(1, 0.9, COVID, "p_a"), hit(2, 0.9, COVID, "p_a"), hit(3, 0.6, ["Pneumonia", "Bacterial Pneumonia"], "p_b"),
            hit(4, 0.6, ["No Finding"], "p_c")]
    vote = knn_vote(hits)
    rows = vote_hierarchy(vote, hits)
    shown = [(r.finding, r.depth, r.parent) for r in rows]
    assert shown == [("Pneumonia", 0, None), ("Viral Pneumonia", 1, "Pneumonia"), ("COVID-19", 2, "Viral Pneumonia"),
                     ("Bacterial Pneumonia", 1, "Pneumonia"), ("No Finding", 0, None)]
    by = {r.finding: r for r in rows}
    assert (by["COVID-19"].neighbours, by["COVID-19"].patients) == (2, 1)  # two films, one patient
    assert (by["Pneumonia"].neighbours, by["Pneumonia"].patients) == (3, 2)
    assert by["COVID-19"].share == pytest.approx(vote["COVID-19"]) and by["COVID-19"].calibrated is None
    assert len(rows) == len(vote)  # each finding exactly once


def test_a_child_without_its_parent_in_the_vote_skips_to_the_nearest_ancestor_or_top():
    hits = [hit(1, 0.9, ["Pneumonia", "COVID-19"], "p_a"), hit(2, 0.5, ["SARS"], "p_b"), hit(3, 0.4, ["Effusion"])]
    rows = vote_hierarchy(knn_vote(hits), hits)
    assert [(r.finding, r.depth) for r in rows] == [("Pneumonia", 0), ("COVID-19", 1), ("SARS", 1), ("Effusion", 0)]
    assert vote_hierarchy({}, []) == []
