"""The KOS note's text: outcomes per patient (with the film count), never an identifier."""

from __future__ import annotations

from embed.kos import describe


def test_outcomes_are_counted_per_patient_with_films_beside():
    prognosis = {"survival": {"known": 5, "positive": 3, "patients_known": 3, "patients_positive": 2}}
    text = describe({"COVID-19": 0.8}, prognosis, n_hits=5, n_referenced=2)
    assert "survival 2 of 3 patients (5 films)" in text
    assert "3 of 5" not in text


def test_film_counts_when_no_patient_is_known():
    text = describe({}, {"icu": {"known": 2, "positive": 1}}, n_hits=2, n_referenced=0)
    assert "icu 1 of 2 films" in text
