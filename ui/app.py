"""The similar-case search page (Streamlit), a pure HTTP client of the API.

Run with ``streamlit run ui/app.py``; the API address and key come from the
environment (``CXR_UI_API_URL``, ``CXR_UI_API_KEY``) or Streamlit secrets
(``api_url``, ``api_key``). The page never imports the engine, torch or the
index: it can be deployed on a machine without them. Query images stay in
memory (Streamlit's uploader keeps them in RAM) and are never written to disk.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from dataclasses import dataclass

import streamlit as st
from PIL import Image

from ui import render
from ui.client import APIError, CXRClient, SearchParams
from ui.components import pacs, results, sidebar

log = logging.getLogger("ui.app")

DEFAULT_API_URL = "http://127.0.0.1:8000"


@dataclass
class Query:
    """What to search with: uploaded bytes (kept in memory only) or an indexed case id."""

    kind: str  # "upload" | "example" | "pacs"
    data: bytes = b""
    name: str = "query"
    case_id: int | None = None
    handle: str | None = None  # a PACS study handle (keyed hash, from the API)
    store: bool = False

    def key(self) -> tuple:
        if self.kind == "upload":
            return ("upload", hashlib.sha256(self.data).hexdigest())
        if self.kind == "pacs":
            return ("pacs", self.handle, self.store)
        return ("example", self.case_id)


def _secret(name: str) -> str | None:
    """A Streamlit secret, or None when there is no secrets file (that is not an error)."""
    try:
        value = st.secrets.get(name)
    except Exception:  # noqa: BLE001 - a missing/invalid secrets.toml must not break the page
        return None
    return str(value) if value else None


def api_config() -> tuple[str, str | None]:
    """(url, key): environment first, then secrets, then the local default."""
    url = os.environ.get("CXR_UI_API_URL") or _secret("api_url") or DEFAULT_API_URL
    key = os.environ.get("CXR_UI_API_KEY") or _secret("api_key")
    return url, key


@st.cache_resource(show_spinner=False)
def get_client(url: str, key: str | None) -> CXRClient:
    """One pooled client per (url, key) for the whole server process."""
    return CXRClient(url, key)


@st.cache_data(show_spinner=False, ttl=60)
def cached_stats(_client: CXRClient, base_url: str, key_id: str) -> dict:
    """/v1/stats once a minute, not on every widget change (errors are not cached)."""
    return _client.stats()


def show_error(exc: Exception) -> None:
    """Plain message in the page; details only in the server log, never a stack trace."""
    if isinstance(exc, APIError):
        st.error(exc.user_message)
    else:
        log.exception("unexpected error in the page")
        st.error(f"Something went wrong in the page ({type(exc).__name__}). Please retry; "
                 "if it persists, check the page's log.")


@st.cache_data(show_spinner=False, ttl=600)
def example_cases(_client: CXRClient, base_url: str, candidates: tuple[int, ...]) -> dict[int, str]:
    """Labels of indexed cases to query by example ({id: 'case 17 · covid-chestxray · COVID-19'})."""
    out: dict[int, str] = {}
    for cid in candidates:
        try:
            case = _client.case(cid)
        except APIError:
            continue  # a gap in the ids, or the index changed: just skip it
        out[cid] = f"case {cid} · {case.get('source', '?')} · {render.fmt_findings(case)}"
    return out


def choose_query(client: CXRClient, stats: dict | None) -> Query | None:
    """The query: an uploaded file (bytes in memory) or an indexed case id; None if none yet."""
    mode = st.radio("Query", ["Upload an image", "Example from the index", "From PACS"], horizontal=True,
                    key="query_mode")
    if mode == "From PACS":
        picked = pacs.choose_study(client)
        return Query("pacs", handle=picked[0], store=picked[1]) if picked else None
    if mode == "Upload an image":
        up = st.file_uploader(
            "Chest X-ray: PNG, JPEG or DICOM (.dcm or no extension)", type=None, key="upload",
            help="The file is sent to the search service and kept only in memory.",
        )
        if up is None:
            st.info("Upload a chest X-ray, or pick an example from the index.")
            return None
        return Query("upload", data=up.getvalue(), name=up.name or "query")
    labels = example_cases(client, client.base_url, tuple(sidebar.example_ids(stats)))
    if not labels:
        st.warning("No indexed case could be listed to pick from.")
        return None
    case_id = st.selectbox("Indexed case", list(labels), key="example_case", format_func=labels.get)
    return Query("example", case_id=int(case_id))


def run_search(client: CXRClient, query: Query, params: SearchParams) -> dict | None:
    """Search once per (query, parameters); the result lives in session state."""
    key = (query.key(), params.key())
    if st.session_state.get("result_key") == key and st.session_state.get("result") is not None:
        return st.session_state["result"]
    try:
        with st.spinner("Searching similar cases..."):
            if query.kind == "upload":
                result = client.search(query.data, params, filename=query.name)
            elif query.kind == "pacs":
                result = client.search_pacs(str(query.handle), params, store=query.store)
            else:
                result = client.similar(query.case_id, params)
                if not result.get("query_png"):
                    result["query_png"] = base64.b64encode(
                        results.fetch_image(client, query.case_id, None)).decode()
    except APIError as exc:
        st.session_state["result"] = None
        st.session_state["result_key"] = None
        show_error(exc)
        return None
    st.session_state["result"] = result
    st.session_state["result_key"] = key
    if st.session_state.get("selected_case") not in {render.hit_id(h) for h in result.get("hits", [])}:
        st.session_state["selected_case"] = None
    return result


def show_query(result: dict) -> Image.Image | None:
    """The standardized query with its attention overlay; returns the query image for the compare view."""
    query_img = render.decode_png(result.get("query_png"))
    attention = render.decode_png(result.get("attention_png"))
    if query_img is None:
        st.caption("The service returned no standardized query image.")
        return None
    opacity = st.slider("Attention overlay opacity", 0.0, 1.0, 0.45, 0.05, key="opacity",
                        disabled=attention is None)
    st.image(render.blend_attention(query_img, attention, opacity),
             caption="Standardized query" + (" with the model's attention" if attention is not None else ""),
             width=360)
    return query_img


def main() -> None:
    st.set_page_config(page_title="CXR similar-case search", layout="wide")
    st.title("Chest X-ray similar-case search")
    st.caption("Research tool, not a diagnostic device. Cases are public, de-identified data.")
    url, key = api_config()
    client = get_client(url, key)
    try:
        stats = cached_stats(client, url, hashlib.sha256((key or "").encode()).hexdigest()[:16])
    except APIError as exc:
        show_error(exc)
        stats = None
    params = sidebar.search_controls(stats)
    if stats is None:
        return
    query = choose_query(client, stats)
    if query is None:
        return
    result = run_search(client, query, params)
    if result is None:
        return
    if result.get("kos_stored"):
        st.success(f"Key-object note stored in the PACS ({result.get('kos_referenced', 0)} similar cases "
                   "of the PACS referenced).")
    warning = render.ood_warning(result)
    if warning:
        st.warning(warning, icon="⚠️")
    left, right = st.columns([1, 1])
    with left:
        query_img = show_query(result)
    with right:
        results.show_vote(result)
        results.show_prognosis(result)
    results.show_detail(client, query_img)
    results.show_hits(client, result)


try:
    main()
except Exception as exc:  # noqa: BLE001 - last line of defence: a message, not a stack trace
    show_error(exc)
