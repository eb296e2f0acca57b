"""The similar-case search page (Streamlit), a pure HTTP client of the API.

Run with ``streamlit run ui/app.py``; the API address and key come from the
environment (``CXR_UI_API_URL``, ``CXR_UI_API_KEY``) or Streamlit secrets
(``api_url``, ``api_key``). The page never imports the engine, torch or the
index: it can be deployed on a machine without them. Query images stay in
memory (Streamlit's uploader keeps them in RAM) and are never written to disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import streamlit as st

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


PAGE_SIZE = 50


@st.cache_data(show_spinner=False, ttl=600)
def case_page(_client: CXRClient, base_url: str, offset: int, source: str | None, finding: str | None) -> dict:
    """One page of GET /v1/cases (cached: the index does not change under a running API)."""
    return _client.list_cases(offset=offset, limit=PAGE_SIZE, source=[source] if source else None,
                              finding=[finding] if finding else None)


def _case_label(case: dict) -> str:
    return (f"case {case.get('id')} · {case.get('source', '?')} · {case.get('view') or 'view ?'} · "
            f"{render.fmt_findings(case)}")


def pick_example(client: CXRClient, stats: dict | None) -> Query | None:
    """Browse the whole index (paged listing, filtered by source and finding) and pick a case."""
    c1, c2, c3 = st.columns([2, 2, 1])
    source = c1.selectbox("Source", ["any"] + sidebar.source_names(stats), key="ex_source")
    finding = c2.selectbox("Finding", ["any"] + sidebar.finding_names(stats), key="ex_finding")
    page_no = int(c3.number_input("Page", min_value=1, value=1, step=1, key="ex_page"))
    page = case_page(client, client.base_url, (page_no - 1) * PAGE_SIZE,
                     None if source == "any" else source, None if finding == "any" else finding)
    cases = page.get("cases") or []
    if not cases:
        st.warning("No indexed case matches" + (" on this page." if page.get("total") else "."))
        return None
    labels = {int(c["id"]): _case_label(c) for c in cases}
    st.caption(f"{page.get('total')} matching cases; showing {page_no * PAGE_SIZE - PAGE_SIZE + 1}–"
               f"{page_no * PAGE_SIZE - PAGE_SIZE + len(cases)}")
    case_id = st.selectbox("Indexed case", list(labels), key="example_case", format_func=labels.get)
    return Query("example", case_id=int(case_id))


def _back_to_own_query() -> None:
    st.session_state["from_case"] = None


def choose_query(client: CXRClient, stats: dict | None) -> Query | None:
    """The query: a neighbour searched from, an uploaded file (bytes in memory), an indexed case or a PACS study."""
    from_case = st.session_state.get("from_case")
    if from_case is not None:
        st.info(f"Searching from indexed case {from_case} (a neighbour you chose).")
        st.button("Back to my query", key="back_to_query", on_click=_back_to_own_query)
        return Query("example", case_id=int(from_case))
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
    return pick_example(client, stats)


def run_search(client: CXRClient, query: Query, params: SearchParams) -> dict | None:
    """Search once per (query, parameters); the result lives in session state."""
    key = (query.key(), params.key())
    if st.session_state.get("result_key") == key and st.session_state.get("result") is not None:
        return st.session_state["result"]
    try:
        with st.spinner("Searching similar cases..."):
            if query.kind == "upload":
                # the file name stays on this machine: the API and the report never see it
                result = client.search(query.data, params, filename="query")
            elif query.kind == "pacs":
                result = client.search_pacs(str(query.handle), params, store=query.store)
            else:
                result = client.similar(query.case_id, params)
                if not result.get("query_png"):
                    result["query_png"] = results.query_png_of_case(client, query.case_id)
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
    results.show_query_facts(result, uploaded=query.kind in ("upload", "pacs"))
    left, right = st.columns([2, 1])
    with left:
        results.show_vote(result)
    with right:
        results.show_prognosis(result)
        label = {"upload": "uploaded film", "pacs": "PACS study"}.get(query.kind, f"indexed case {query.case_id}")
        results.show_report_button(client, result, label)
    results.show_viewer(client, result)
    results.show_hits(client, result)


try:
    main()
except Exception as exc:  # noqa: BLE001 - last line of defence: a message, not a stack trace
    show_error(exc)
