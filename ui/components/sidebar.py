"""Sidebar controls: k, filters and the same-patient mode, turned into SearchParams."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.client import SearchParams

DEFAULT_VIEWS = ["PA", "AP", "AP Supine", "LATERAL"]
SAME_PATIENT_LABELS = {
    "exclude": "Exclude the query's own patient",
    "include": "Include the query's own patient",
    "only": "Only the query's own patient (follow-up)",
}


def _names(stats: dict[str, Any] | None, *keys: str) -> list[str]:
    """Option names from a stats section, whether a {name: count} dict or a list; most frequent first."""
    if not stats:
        return []
    for section in (stats, stats.get("engine") or {}):
        for key in keys:
            value = section.get(key) if isinstance(section, dict) else None
            if isinstance(value, dict) and value:
                return [str(k) for k, _ in sorted(value.items(), key=lambda kv: (-_num(kv[1]), str(kv[0])))]
            if isinstance(value, list) and value:
                return [str(v) for v in value]
    return []


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else 0.0


def example_ids(stats: dict[str, Any] | None, n: int = 12) -> list[int]:
    """Case ids spread over the index (ids are assigned in build order, so this spans sources).

    The API has no listing endpoint; ids run 0..cases-1 or 1..cases, and the page
    drops the ones that turn out not to exist when fetching them.
    """
    total = int((stats or {}).get("cases") or 0)
    if total <= 0:
        return []
    if total <= n:
        return list(range(1, total + 1))
    step = total / n
    return sorted({1 + int(i * step) for i in range(n)})


def search_controls(stats: dict[str, Any] | None) -> SearchParams:
    """Draw the sidebar and return the current parameters."""
    sb = st.sidebar
    sb.header("Search settings")
    k = sb.slider("Number of similar cases (k)", 1, 50, 10, key="k")
    views = sorted(set(DEFAULT_VIEWS) | set(_names(stats, "views", "view")))
    view = sb.multiselect("View", views, key="f_view", help="Any of the selected views; none = all views")
    sex_label = sb.selectbox("Sex", ["Any", "F", "M"], key="f_sex")
    use_age = sb.checkbox("Filter by age", key="f_use_age")
    age_min = age_max = None
    if use_age:
        age_min, age_max = sb.slider("Age range (years)", 0, 100, (0, 100), key="f_age")
    source = sb.multiselect("Source", _names(stats, "sources", "source"), key="f_source")
    finding = sb.multiselect("Finding", _names(stats, "findings", "finding"), key="f_finding",
                             help="Cases having any of the selected findings")
    same = sb.radio("Same patient", list(SAME_PATIENT_LABELS), format_func=SAME_PATIENT_LABELS.get,
                    key="f_same_patient",
                    help="The patient is known for indexed examples and for DICOM uploads with a patient id.")
    return SearchParams(
        k=int(k), view=list(view), sex=None if sex_label == "Any" else sex_label,
        age_min=float(age_min) if age_min is not None else None,
        age_max=float(age_max) if age_max is not None else None,
        source=list(source), finding=list(finding), same_patient=str(same),
    )
