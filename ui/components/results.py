"""Result views: the kNN vote, the neighbours' outcomes, the hit grid and the compare view."""

from __future__ import annotations

import io
from typing import Any

import streamlit as st
from PIL import Image

from ui import render
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


def show_vote(result: dict[str, Any]) -> None:
    """Bar chart of the kNN vote with the probabilities written out."""
    rows = render.vote_rows(result.get("vote"))
    st.subheader("kNN vote")
    if not rows:
        st.caption("The neighbours carry no labels to vote with.")
        return
    import pandas as pd

    df = pd.DataFrame({"label": [r[0] for r in rows], "probability": [r[1] for r in rows]})
    st.bar_chart(df, x="label", y="probability", horizontal=True, sort="-probability",
                 height=60 + 26 * len(rows))  # tall enough for every label
    st.markdown(" · ".join(f"**{label}** {p:.0%}" for label, p in rows[:5]))
    calibrated = render.calibrated_rows(result.get("calibrated_vote"))
    if calibrated:
        st.markdown("Calibrated probability: " + " · ".join(calibrated))
    if sum(p for _, p in rows) > 1.0001:
        st.caption("Findings are multi-label (a film can show several), so the shares need not add up to 100 %.")


def show_prognosis(result: dict[str, Any]) -> None:
    """The neighbours' outcomes, e.g. '7 of 9 known survived'."""
    st.subheader("Outcomes of the neighbours")
    sentences = render.prognosis_sentences(result.get("prognosis"))
    if sentences:
        st.markdown("\n".join(f"- {s}" for s in sentences))
    else:
        st.caption("No outcome (survival, ICU, intubation) is recorded for these neighbours.")


def _hit_card(client: CXRClient, hit: dict[str, Any]) -> None:
    case = render.hit_case(hit)
    cid = render.hit_id(hit)
    try:
        st.image(fetch_image(client, cid, THUMB_SIZE), width="stretch")
    except APIError as exc:
        st.caption(f"image unavailable ({exc.code})")
    st.markdown(f"**#{hit.get('rank', '?')} · similarity {float(hit.get('similarity', 0)):.3f}**")
    st.caption(
        f"{render.fmt_findings(case)}  \n{case.get('view') or 'view ?'} · {render.fmt_age_sex(case)}  \n"
        f"{case.get('source', '')}"
    )
    prog = render.fmt_prognosis(case)
    if prog:
        st.caption(prog)
    st.button("Open beside the query", key=f"open_{cid}", on_click=_select, args=(cid,))


def show_hits(client: CXRClient, result: dict[str, Any]) -> None:
    """The neighbours as a grid of cards."""
    hits = result.get("hits") or []
    st.subheader(f"{len(hits)} similar cases")
    if not hits:
        st.info("No indexed case matches these filters. Loosen the filters in the sidebar.")
        return
    for start in range(0, len(hits), GRID_COLUMNS):
        cols = st.columns(GRID_COLUMNS)
        for col, hit in zip(cols, hits[start:start + GRID_COLUMNS]):
            with col:
                _hit_card(client, hit)


def show_detail(client: CXRClient, query_img: Image.Image | None) -> None:
    """The selected neighbour beside the query, with its full metadata."""
    cid = st.session_state.get("selected_case")
    if cid is None:
        return
    try:
        case = client.case(int(cid))
        data = fetch_image(client, int(cid), DETAIL_SIZE)
    except APIError as exc:
        st.error(exc.user_message)
        return
    with st.container(border=True):
        st.subheader(f"Query beside case {cid}")
        left, right, meta = st.columns([1, 1, 1])
        with left:
            if query_img is not None:
                st.image(query_img, caption="Query (standardized)", width="stretch")
        with right:
            st.image(Image.open(io.BytesIO(data)), caption=f"Case {cid}", width="stretch")
        with meta:
            rows = render.metadata_rows(case)
            st.table({"field": [r[0] for r in rows], "value": [r[1] for r in rows]})
            st.button("Close", key="close_detail", on_click=_select, args=(None,))
