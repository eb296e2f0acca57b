"""ui.client against the real API process: results and the mapping of every error to a typed one."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.ui.conftest import free_port
from ui import render
from ui.client import (
    AuthError,
    BadImageError,
    CXRClient,
    InvalidRequestError,
    NotFoundError,
    SearchParams,
    ServiceUnavailableError,
)


@pytest.fixture(scope="module")
def client(api_server):
    with CXRClient(api_server.url, api_server.key, timeout=60) as c:
        yield c


def _query_bytes(api_server, cls: str = "Pneumonia") -> bytes:
    return sorted((api_server.corpus / cls).glob("*.png"))[0].read_bytes()


def test_health_and_stats(client):
    assert client.health()["index_loaded"] is True
    stats = client.stats()
    assert stats["cases"] == 20
    assert set(stats["findings"]) >= {"Pneumonia", "No Finding"}


def test_search_returns_ranked_hits_vote_and_images(client, api_server):
    res = client.search(_query_bytes(api_server), SearchParams(k=5), filename="q.png")
    hits = res["hits"]
    assert len(hits) == 5
    sims = [h["similarity"] for h in hits]
    assert sims == sorted(sims, reverse=True)
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert abs(sum(res["vote"].values()) - 1.0) < 1e-3
    query = render.decode_png(res["query_png"])
    attention = render.decode_png(res["attention_png"])
    assert query is not None and attention is not None and query.size == attention.size
    blended = render.blend_attention(query, attention, 0.5)
    assert blended.size == query.size


def test_filters_and_same_patient_modes(client, api_server):
    res = client.search(_query_bytes(api_server, "No_findings"), SearchParams(k=20, finding=["Pneumonia"]))
    assert res["hits"], "the filter left no hits"
    assert all("Pneumonia" in render.hit_case(h)["findings"] for h in res["hits"])
    # by example: the query case's own patient is excluded by default, and is all there is with "only"
    cid = render.hit_id(client.search(_query_bytes(api_server), SearchParams(k=1))["hits"][0])
    patient = client.case(cid)["patient"]
    excluded = client.similar(cid, SearchParams(k=19))
    # the page shows the example's standardized image and attention like an upload's
    assert render.decode_png(excluded.get("query_png")) is not None
    assert render.decode_png(excluded.get("attention_png")) is not None
    assert all(render.hit_case(h)["patient"] != patient for h in excluded["hits"])
    only = client.similar(cid, SearchParams(k=19, same_patient="only"))
    assert only["hits"] and all(render.hit_case(h)["patient"] == patient for h in only["hits"])
    assert cid not in {render.hit_id(h) for h in only["hits"]}


def test_case_and_case_image(client, api_server):
    cid = render.hit_id(client.search(_query_bytes(api_server), SearchParams(k=1))["hits"][0])
    case = client.case(cid)
    assert case["id"] == cid and "image_path" not in case
    img = Image.open(io.BytesIO(client.case_image(cid, size=32)))
    assert img.size == (32, 32)


def test_missing_and_wrong_key_are_auth_errors(api_server):
    for key, status in ((None, 401), ("not-the-key", 403)):
        with CXRClient(api_server.url, key) as c, pytest.raises(AuthError) as ei:
            c.stats()
        assert ei.value.status == status
        assert "API key" in ei.value.user_message


def test_not_an_image_is_415(client):
    with pytest.raises(BadImageError) as ei:
        client.search(b"this is a text file, not an X-ray" * 10, filename="notes.png")
    assert ei.value.status == 415 and ei.value.code == "not_an_image"
    assert ei.value.user_message.startswith("This file could not be used as a chest X-ray")


def test_truncated_image_is_422(client, api_server):
    data = _query_bytes(api_server)
    with pytest.raises(BadImageError) as ei:
        client.search(data[: len(data) // 3], filename="cut.png")
    assert ei.value.status == 422


def test_bad_parameters_are_422(client, api_server):
    with pytest.raises(InvalidRequestError) as ei:
        client.search(_query_bytes(api_server), SearchParams(k=0))
    assert ei.value.status == 422
    with pytest.raises(InvalidRequestError):
        client.search(_query_bytes(api_server), SearchParams(age_min=60, age_max=20))


def test_unknown_case_is_404(client):
    with pytest.raises(NotFoundError) as ei:
        client.case(987654)
    assert ei.value.status == 404


def test_service_down():
    with CXRClient(f"http://127.0.0.1:{free_port()}", "k", timeout=5) as c, \
            pytest.raises(ServiceUnavailableError) as ei:
        c.health()
    assert "cannot connect" in ei.value.user_message


def test_index_not_loaded_is_service_unavailable(tmp_path, monkeypatch):
    """A real API started on a folder that is no index: /v1 answers 503, the page says so."""
    import sys

    from streamlit.testing.v1 import AppTest

    from tests.conftest import PROJECT_ROOT
    from tests.ui.conftest import base_env, start, stop, wait_http

    port = free_port()
    env = base_env(tmp_path)
    env.update({"CXR_API_INDEX_DIR": str(tmp_path / "not_an_index"), "CXR_API_API_KEYS": "k"})
    log = tmp_path / "api.log"
    proc = start([sys.executable, "-m", "uvicorn", "--factory", "search_api.app:create_app", "--host", "127.0.0.1",
                  "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, lambda r: r.status_code == 200, log)
        with CXRClient(url, "k") as c:
            assert c.health()["index_loaded"] is False
            with pytest.raises(ServiceUnavailableError) as ei:
                c.stats()
        assert ei.value.status == 503
        monkeypatch.setenv("CXR_UI_API_URL", url)
        monkeypatch.setenv("CXR_UI_API_KEY", "k")
        at = AppTest.from_file(str(PROJECT_ROOT / "ui" / "app.py"), default_timeout=90).run()
        assert not at.exception
        assert any("not available" in e.value for e in at.error)
    finally:
        stop(proc)
