"""Result views: the query's facts, the vote with its counts, outcomes per patient, the viewer,
the neighbours grouped by patient, and the report download."""

from __future__ import annotations

import base64
from typing import Any

import streamlit as st
import streamlit.components.v1 as components

from ui import evidence, render, report, viewer
from ui.client import APIError, CXRClient

THUMB_SIZE = 192
DETAIL_SIZE = 512
GRID_COLUMNS = 5


@st.cache_data(show_spinner=False, max_entries=512)
def _cached_image(_client: CXRClient, base_url: str, case_id: int, size: int | None) -> bytes:
    """Case images are immutable for an index, so cache them per (API, id, size)."""
    return _client.case_image(case_id, size)


def fetch_image(client: CXRClient, case_id: int, size: int | None) -> bytes:
    return _cached_image(client, client.base_url, int(case_id), size)


def _select(case_id: int | None) -> None:
    st.session_state["selected_case"] = case_id


def _search_from(case_id: int) -> None:
    """A neighbour becomes the query (GET /v1/cases/{id}/similar)."""
    st.session_state["from_case"] = int(case_id)
    st.session_state["selected_case"] = None


def show_query_facts(result: dict[str, Any], uploaded: bool) -> None:
    """The query's own facts and view, and whether an uploaded film is already an indexed case."""
    st.markdown(f"**Query:** {evidence.facts_text(result)}  \n**{evidence.view_text(result)}**")
    if uploaded and result.get("query_case_id") is not None:
        st.info(f"This film is already in the index as case {int(result['query_case_id'])}; "
                "that case is left out of its own neighbours.")


def show_vote(result: dict[str, Any]) -> None:
    """The vote on a fixed 0–100 % axis, as a hierarchy, each line with its neighbours and patients."""
    st.subheader("kNN vote (similarity-weighted)")
    st.html(evidence.VOTE_CSS + evidence.vote_html(result))
    # Issue 15's calibrated probability fills vote_detail[*].calibrated and is shown on each line.
    calibrated = render.calibrated_rows(result.get("calibrated_vote"))
    if calibrated:
        st.markdown("Calibrated probability: " + " · ".join(calibrated))
    st.caption(evidence.HOW_TO_READ)


def show_prognosis(result: dict[str, Any]) -> None:
    """The neighbours' outcomes, each patient once: '2 of 3 patients survived (5 films)'."""
    st.subheader("Outcomes of the neighbours")
    sentences = evidence.outcome_sentences(result.get("prognosis"))
    if sentences:
        st.markdown("\n".join(f"- {s}" for s in sentences))
    else:
        st.caption("No outcome (survival, ICU, intubation) is recorded for these neighbours.")


def show_report_button(client: CXRClient, result: dict[str, Any], query_label: str) -> None:
    """'Download report': print-ready HTML with the query, facts, vote, neighbours and disclaimer."""
    thumbs: dict[int, bytes] = {}
    for h in result.get("hits") or []:
        cid = render.hit_id(h)
        if cid is None:
            continue
        try:
            thumbs[cid] = fetch_image(client, cid, THUMB_SIZE)
        except APIError:
            continue  # the report says "image unavailable" for it
    doc = report.report_html(result, thumbs, query_label=query_label)
    st.download_button("Download report", doc.encode("utf-8"), file_name="similar-case-report.html",
                       mime="text/html", key="download_report",
                       help="A print-ready HTML page (print it to PDF from the browser). No file name or "
                            "identifier of yours is in it.")


def show_viewer(client: CXRClient, result: dict[str, Any]) -> None:
    """The query and the chosen neighbour side by side at full width: zoom/pan, window/level, attention."""
    hits = result.get("hits") or []
    cid = st.session_state.get("selected_case")
    if cid is None and hits:
        cid = render.hit_id(hits[0])
    neighbour_png, title = None, "Neighbour"
    if cid is not None:
        try:
            neighbour_png = fetch_image(client, int(cid), DETAIL_SIZE)
            hit = next((h for h in hits if render.hit_id(h) == int(cid)), None)
            case = render.hit_case(hit) if hit else client.case(int(cid))
            rank = f"#{hit.get('rank')} · " if hit else ""
            title = (f"{rank}case {cid} · patient {evidence.short_patient(case.get('patient'))} · "
                     f"{evidence.day_text(case)} · {render.fmt_findings(case)}")
        except APIError as exc:
            st.warning(exc.user_message)
    st.subheader("Viewer")
    try:
        doc = viewer.viewer_html(result.get("query_png"), result.get("attention_png"), neighbour_png, title)
    except viewer.ViewerAssetMissing as exc:
        st.error(str(exc))
        return
    components.html(doc, height=viewer.HEIGHT)
    if cid is not None and neighbour_png is not None:
        with st.expander(f"Everything recorded for case {cid}"):
            case = client.case(int(cid))
            rows = evidence.readable_rows(case)
            st.table({"field": [r[0] for r in rows], "value": [r[1] for r in rows]})


def _hit_card(client: CXRClient, hit: dict[str, Any], group_size: int, index_in_group: int) -> None:
    case = render.hit_case(hit)
    cid = render.hit_id(hit)
    try:
        st.image(fetch_image(client, cid, THUMB_SIZE), width="stretch")
    except APIError as exc:
        st.caption(f"image unavailable ({exc.code})")
    st.markdown(f"**#{hit.get('rank', '?')} · similarity {float(hit.get('similarity', 0)):.3f}**")
    film = f" · film {index_in_group + 1} of {group_size}" if group_size > 1 else ""
    st.caption(
        f"patient {evidence.short_patient(case.get('patient'))} · {evidence.day_text(case)}{film}  \n"
        f"{render.fmt_findings(case)}  \n{case.get('view') or 'view ?'} · {render.fmt_age_sex(case)}  \n"
        f"{case.get('source', '')}"
    )
    prog = render.fmt_prognosis(case)
    if prog:
        st.caption(prog)
    st.button("Open in viewer", key=f"open_{cid}", on_click=_select, args=(cid,))
    st.button("Search from this case", key=f"from_{cid}", on_click=_search_from, args=(cid,))


def show_hits(client: CXRClient, result: dict[str, Any]) -> None:
    """The neighbours as cards, films of one patient next to each other (groups in rank order)."""
    hits = result.get("hits") or []
    st.subheader(f"{len(hits)} similar cases")
    if not hits:
        st.info("No indexed case matches. Loosen the filters, or search every view, in the sidebar.")
        return
    groups = evidence.group_hits(hits)
    n_patients = len(groups)
    st.caption(f"from {n_patients} patient{'s' if n_patients != 1 else ''}; films of one patient are shown together "
               "(patient = a short pseudonym, never the source's id; day = the source's day offset, e.g. days since admission)")
    cards = [(h, len(g), i) for g in groups for i, h in enumerate(g)]
    for start in range(0, len(cards), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, (hit, size, i) in zip(cols, cards[start:start + GRID_COLUMNS]):
            with col:
                _hit_card(client, hit, size, i)


def query_png_of_case(client: CXRClient, case_id: int) -> str:
    """An indexed case's standardized image as base64, when the API sent none with the result."""
    return base64.b64encode(fetch_image(client, case_id, None)).decode()
