"""The page's "From PACS" tab with Streamlit's AppTest, against the real API process and the live Orthanc."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import PROJECT_ROOT
from tests.pacs.conftest import PSEUDONYM_KEY
from tests.ui.conftest import free_port, start, stop, wait_http

pytestmark = pytest.mark.pacs
APP = str(PROJECT_ROOT / "ui" / "app.py")
KEY = "pacs-ui-key"


@pytest.fixture(scope="module")
def api_url(pacs, pacs_index, pacs_env, tmp_path_factory) -> Iterator[str]:
    import os

    tmp = tmp_path_factory.mktemp("pacs_api")
    port = free_port()
    env = dict(os.environ)
    env.update({"CXR_HOME": str(pacs_env), "CXR_PSEUDONYM_KEY": PSEUDONYM_KEY, "CXR_API_INDEX_DIR": str(pacs_index[1]),
                "CXR_API_API_KEYS": KEY, "CXR_API_DICOMWEB_URL": pacs.url, "CXR_API_DICOMWEB_AUTH": pacs.auth,
                "PYTHONUNBUFFERED": "1"})
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "search_api.app:create_app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]
    proc = start(cmd, env, tmp / "api.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, lambda r: r.status_code == 200 and r.json().get("index_loaded"),
                  tmp / "api.log")
        yield url
    finally:
        stop(proc)


def test_from_pacs_tab_lists_studies_and_searches(monkeypatch, api_url, pacs):
    monkeypatch.setenv("CXR_UI_API_URL", api_url)
    monkeypatch.setenv("CXR_UI_API_KEY", KEY)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.radio(key="query_mode").set_value("From PACS").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    box = at.selectbox(key="pacs_study")
    assert len(box.options) >= len(pacs.films) and box.options[0].startswith("#1 · ")
    for f in pacs.films:
        assert f.patient_id not in " ".join(box.options) and f.study_uid not in " ".join(box.options)
    result = at.session_state["result"]
    assert result["hits"] and result["query"].startswith("u_") and not result["kos_stored"]
    at.checkbox(key="pacs_store").check().run()
    assert at.session_state["result"]["kos_stored"] and any("Key-object note stored" in s.value for s in at.success)
