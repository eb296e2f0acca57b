"""The "From PACS" tab: recent chest studies of the hospital's PACS, listed through the API.

The page only talks to the API; the API talks to the PACS it is configured
with. Studies come as de-identified handles (no names, UIDs or dates), so the
list shows sex, age and modality, newest first.
"""

from __future__ import annotations

import streamlit as st

from ui.client import APIError, CXRClient


def study_label(study: dict) -> str:
    """'#1 · CR · F · 54 y · 1 image' from a /v1/pacs/studies entry."""
    parts = [f"#{study.get('rank', '?')}", "/".join(study.get("modalities") or []) or "?"]
    parts.append(study.get("sex") or "sex ?")
    age = study.get("age")
    parts.append(f"{age:g} y" if isinstance(age, (int, float)) else "age ?")
    n = study.get("instances")
    if n:
        parts.append(f"{n} image{'s' if n != 1 else ''}")
    return " · ".join(parts)


@st.cache_data(show_spinner=False, ttl=30)
def recent(_client: CXRClient, base_url: str, limit: int) -> list[dict]:
    return _client.pacs_studies(limit)


def choose_study(client: CXRClient) -> tuple[str, bool] | None:
    """(handle, store the note back?) of the picked study, or None (with a message) when there is none."""
    try:
        studies = recent(client, client.base_url, 20)
    except APIError as exc:
        if exc.code == "pacs_not_configured":
            st.info("No PACS is configured on the search service (CXR_API_DICOMWEB_URL, see docs/pacs.md).")
        else:
            st.error(exc.user_message)
        return None
    if not studies:
        st.info("The PACS holds no recent chest radiograph study (CR/DX).")
        return None
    labels = {s["handle"]: study_label(s) for s in studies}
    handle = st.selectbox("Recent chest studies in the PACS", list(labels), format_func=labels.get,
                          key="pacs_study")
    store = st.checkbox("Send the similar cases back to the PACS as a key-object note", value=False,
                        key="pacs_store",
                        help="A DICOM Key Object Selection document in the same study, only to this PACS.")
    return str(handle), bool(store)
