"""The page's evidence texts and the report, on API-shaped dicts (no browser)."""

from __future__ import annotations

import re

from ui import evidence, report
from ui.viewer import PANZOOM_JS, viewer_html

RESULT = {
    "k": 3, "count": 3, "model_sha256": "3f2a9c1e0b7d",
    "hits": [
        {"rank": 1, "similarity": 0.91, "case": {"id": 5, "patient": "p_aaaaaa1111111111", "day_offset": 7.0,
                                                 "findings": ["Pneumonia", "Viral Pneumonia", "COVID-19"],
                                                 "prognosis": {"survival": False}, "view": "PA", "source": "covid"}},
        {"rank": 2, "similarity": 0.88, "case": {"id": 9, "patient": "p_bbbbbb2222222222", "day_offset": 1.0,
                                                 "findings": ["No Finding"], "prognosis": {}, "view": "AP"}},
        {"rank": 3, "similarity": 0.80, "case": {"id": 4, "patient": "p_aaaaaa1111111111", "day_offset": 0.0,
                                                 "findings": ["Pneumonia", "Viral Pneumonia", "COVID-19"],
                                                 "prognosis": {"survival": True}, "view": "PA"}},
    ],
    "vote": {"Pneumonia": 0.67, "Viral Pneumonia": 0.67, "COVID-19": 0.67, "No Finding": 0.33},
    "vote_detail": [
        {"finding": "Pneumonia", "share": 0.67, "depth": 0, "neighbours": 2, "patients": 1, "calibrated": None},
        {"finding": "Viral Pneumonia", "share": 0.67, "depth": 1, "neighbours": 2, "patients": 1, "calibrated": None},
        {"finding": "COVID-19", "share": 0.67, "depth": 2, "neighbours": 2, "patients": 1, "calibrated": 0.41},
        {"finding": "No Finding", "share": 0.33, "depth": 0, "neighbours": 1, "patients": 1, "calibrated": None},
    ],
    "prognosis": {"survival": {"known": 2, "positive": 1, "share": 0.5, "patients_known": 1,
                               "patients_positive": 0, "patient_share": 0.0}},
    "query_view": {"view": None, "family": "frontal", "source": "classifier", "lateral_score": 0.03},
    "view_family_used": "frontal",
    "query_facts": {"age": 61.0, "sex": "F", "body_part": "CHEST"},
    "query_case_id": 12,
    "query_png": None, "attention_png": None,
}


def test_vote_is_drawn_on_a_fixed_axis_as_an_indented_hierarchy_with_counts():
    doc = evidence.vote_html(RESULT)
    widths = [float(w) for w in re.findall(r"width:([0-9.]+)%", doc)]
    assert widths == [67.0, 67.0, 67.0, 33.0]  # share of a fixed 100 % track, not of the top value
    assert re.findall(r"data-depth='(\d)'", doc) == ["0", "1", "2", "0"]
    assert "2 neighbours, 1 patient" in doc and "1 neighbour, 1 patient" in doc
    assert "calibrated 41%" in doc  # the place for a calibrated figure
    flat = evidence.vote_html({"vote": {"A": 1.0}})
    assert "width:100.0%" in flat and "counts not reported" in flat


def test_outcomes_per_patient_with_films_beside():
    assert evidence.outcome_sentences(RESULT["prognosis"]) == ["0 of 1 patient survived (2 films)"]
    assert evidence.outcome_sentences({"survival": {"known": 3, "positive": 2}}) == ["2 of 3 films survived"]


def test_hits_grouped_by_patient_in_rank_order_with_short_pseudonyms():
    groups = evidence.group_hits(RESULT["hits"])
    assert [[h["case"]["id"] for h in g] for g in groups] == [[4, 5], [9]]  # films of a patient by day
    assert evidence.short_patient("p_aaaaaa1111111111") == "aaaaaa" and evidence.short_patient(None) == "unknown"
    assert evidence.day_text({"day_offset": 7.0}) == "day 7"


def test_query_view_and_facts_texts():
    assert evidence.view_text(RESULT) == ("View: frontal (estimated by the view classifier, lateral score 0.03) · "
                                          "neighbours: frontal films only")
    assert evidence.facts_text(RESULT) == "age 61 · sex F · body part CHEST"
    rows = dict(evidence.readable_rows({"id": 3, "patient": "p_abcdef0123", "prognosis": {"intubation_present": True},
                                        "extra": {"filename": "x.png", "temperature": 38}}))
    assert rows["intubated at imaging"] == "yes" and rows["patient (pseudonym)"] == "abcdef"
    assert "filename" not in rows and rows["temperature"] == "38"


def test_report_holds_query_vote_neighbours_and_disclaimer_but_no_file_name():
    doc = report.report_html(RESULT, {5: b"\x89PNG fake"}, query_label="uploaded film")
    for text in ("Similar-case report", "uploaded film", "age 61", "already in the index as case 12",
                 "2 neighbours, 1 patient", "0 of 1 patient survived (2 films)", "aaaaaa · day 7", "survival: no",
                 "not a medical device", "How to read this"):
        assert text in doc, text
    assert "image unavailable" in doc  # case 9 had no thumbnail
    assert "p_aaaaaa1111111111" not in doc  # short pseudonyms only


def test_viewer_document_has_zoom_window_level_and_overlay_controls():
    if not PANZOOM_JS.is_file():
        import pytest

        pytest.skip("the viewer library is not installed: run `make install` (npm ci --prefix ui/static)")
    doc = viewer_html("aGVsbG8=", "aGVsbG8=", None, "Neighbour")
    for needle in ("Panzoom(", "feComponentTransfer", 'id="win"', 'id="lev"', 'id="ovl"', "linear-gradient",
                   "Choose a neighbour below"):
        assert needle in doc, needle
