"""Sidebar controls: k, filters and the same-patient mode, turned into SearchParams."""

from __future__ import annotations

from typing import Any

import streamlit as st

from ui.client import SearchParams

DEFAULT_VIEWS = ["PA", "AP", "AP Supine", "LATERAL"]
QUERY_VIEWS = ["as detected", "PA", "AP", "LATERAL"]
SAME_PATIENT_LABELS = {
    "exclude": "Exclude the query's own patient",
    "include": "Include the query's own patient",
    "only": "Only the query's own patient (follow-up)",
}


def _sections(stats: Any, depth: int = 2) -> list[dict[str, Any]]:
    """The stats dict and its nested dicts (the engine's own stats sit under "engine")."""
    if not isinstance(stats, dict):
        return []
    out = [stats]
    if depth > 0:
        for v in stats.values():
            out += _sections(v, depth - 1)
    return out


def _names(stats: dict[str, Any] | None, *keys: str) -> list[str]:
    """Option names from a stats section, whether a {name: count} dict or a list; most frequent first."""
    for section in _sections(stats):
        for key in keys:
            value = section.get(key)
            if isinstance(value, dict) and value:
                ranked = sorted(value.items(), key=lambda kv: (-_num(kv[1]), str(kv[0])))
                return [str(k) for k, _ in ranked if str(k) != "unknown"]
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                return [v for v in value if v != "unknown"]
    return []


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else 0.0


def source_names(stats: dict[str, Any] | None) -> list[str]:
    return _names(stats, "sources", "by_source")


def finding_names(stats: dict[str, Any] | None) -> list[str]:
    return _names(stats, "findings", "by_finding")


def search_controls(stats: dict[str, Any] | None) -> SearchParams:
    """Draw the sidebar and return the current parameters."""
    sb = st.sidebar
    sb.header("Search settings")
    k = sb.slider("Number of similar cases (k)", 1, 50, 10, key="k")
    views = sorted(set(DEFAULT_VIEWS) | set(_names(stats, "views", "by_view")))
    view = sb.multiselect("View", views, key="f_view", help="Any of the selected views; none = all views")
    sex_label = sb.selectbox("Sex", ["Any", "F", "M"], key="f_sex")
    use_age = sb.checkbox("Filter by age", key="f_use_age")
    age_min = age_max = None
    if use_age:
        age_min, age_max = sb.slider("Age range (years)", 0, 100, (0, 100), key="f_age")
    source = sb.multiselect("Source", source_names(stats), key="f_source")
    finding = sb.multiselect("Finding", finding_names(stats), key="f_finding",
                             help="Cases having any of the selected findings")
    same = sb.radio("Same patient", list(SAME_PATIENT_LABELS), format_func=SAME_PATIENT_LABELS.get,
                    key="f_same_patient",
                    help="The patient is known for indexed examples and for DICOM uploads with a patient id.")
    same_view = sb.checkbox("Only films of the query's view (frontal or lateral)", value=True, key="f_same_view",
                            help="Frontal = PA/AP. The query's view comes from its DICOM header, the index, or the "
                                 "view classifier. Untick to search every view. A View filter above wins.")
    qview = sb.selectbox("The query's view", QUERY_VIEWS, key="f_query_view",
                         help="Set it when the file does not say, or says wrong.")
    return SearchParams(
        k=int(k), view=list(view), sex=None if sex_label == "Any" else sex_label,
        age_min=float(age_min) if age_min is not None else None,
        age_max=float(age_max) if age_max is not None else None,
        source=list(source), finding=list(finding), same_patient=str(same),
        view_scope="same" if same_view else "any", query_view=None if qview == QUERY_VIEWS[0] else qview,
    )
