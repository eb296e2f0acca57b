"""The page's logic with Streamlit's AppTest, against the real API process over the tiny index.

Uploading cannot be driven from AppTest, so these tests query by example
(the page's selectbox of indexed cases); the browser test covers uploads.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.conftest import PROJECT_ROOT
from tests.ui.conftest import free_port

APP = str(PROJECT_ROOT / "ui" / "app.py")
TIMEOUT = 90


def _page(monkeypatch, url: str, key: str | None) -> AppTest:
    monkeypatch.setenv("CXR_UI_API_URL", url)
    if key is None:
        monkeypatch.delenv("CXR_UI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("CXR_UI_API_KEY", key)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [s.value for s in at.subheader]
    return "\n".join(str(p) for p in parts)


def _by_example(at: AppTest) -> AppTest:
    at.radio(key="query_mode").set_value("Example from the index").run()
    return at


def test_example_query_shows_hits_vote_and_outcomes(monkeypatch, api_server):
    at = _by_example(_page(monkeypatch, api_server.url, api_server.key))
    assert not at.exception and not at.error, [e.value for e in at.error]
    result = at.session_state["result"]
    k = at.sidebar.slider(key="k").value
    assert 0 < len(result["hits"]) <= k
    text = _texts(at)
    assert "kNN vote" in text and "similar cases" in text
    assert "similarity" in text
    # the vote's top label is written out with its probability
    top_label, top_p = max(result["vote"].items(), key=lambda kv: kv[1])
    assert f"**{top_label}** {top_p:.0%}" in text
    # one "open" button per hit
    opens = [b for b in at.button if b.key and b.key.startswith("open_")]
    assert len(opens) == len(result["hits"])


def test_open_a_result_beside_the_query(monkeypatch, api_server):
    at = _by_example(_page(monkeypatch, api_server.url, api_server.key))
    first = at.session_state["result"]["hits"][1]["case"]["id"]
    at.button(key=f"open_{first}").click().run()
    assert at.session_state["selected_case"] == first
    assert f"Query beside case {first}" in _texts(at)
    table = at.table[0].value
    assert "patient" in set(table["field"]) and "image_path" not in set(table["field"])
    at.button(key="close_detail").click().run()
    assert at.session_state["selected_case"] is None
    assert "Query beside case" not in _texts(at)


def test_sidebar_filters_reach_the_search(monkeypatch, api_server):
    at = _by_example(_page(monkeypatch, api_server.url, api_server.key))
    at.sidebar.multiselect(key="f_finding").set_value(["Pneumonia"]).run()
    at.sidebar.slider(key="k").set_value(3).run()
    hits = at.session_state["result"]["hits"]
    assert 0 < len(hits) <= 3
    assert all("Pneumonia" in h["case"]["findings"] for h in hits)


def test_changing_the_example_reruns_the_search(monkeypatch, api_server):
    at = _by_example(_page(monkeypatch, api_server.url, api_server.key))
    box = at.selectbox(key="example_case")
    assert len(box.options) >= 2
    before = at.session_state["result_key"]
    second = int(box.options[1].split(" ")[1])  # options read "case 17 · source · findings"
    assert second != box.value
    box.set_value(second).run()
    assert at.session_state["example_case"] == second
    assert at.session_state["result_key"] != before
    assert at.session_state["result"]["hits"]


def test_wrong_key_is_a_clear_message(monkeypatch, api_server):
    at = _page(monkeypatch, api_server.url, "wrong-key")
    assert not at.exception
    assert any("refused the API key" in e.value for e in at.error)
    assert "Traceback" not in "\n".join(e.value for e in at.error)


def test_service_down_is_a_clear_message(monkeypatch):
    at = _page(monkeypatch, f"http://127.0.0.1:{free_port()}", "k")
    assert not at.exception
    assert any("not available" in e.value for e in at.error)


def test_upload_mode_waits_for_a_file(monkeypatch, api_server):
    at = _page(monkeypatch, api_server.url, api_server.key)
    assert at.radio(key="query_mode").value == "Upload an image"
    assert any("Upload a chest X-ray" in i.value for i in at.info)
    assert "result" not in at.session_state  # nothing searched without a query


def test_from_pacs_tab_without_a_pacs_says_how_to_configure_one(monkeypatch, api_server):
    at = _page(monkeypatch, api_server.url, api_server.key)
    at.radio(key="query_mode").set_value("From PACS").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("CXR_API_DICOMWEB_URL" in i.value for i in at.info)
