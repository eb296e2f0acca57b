"""API keys and the bind policy, without needing an index (auth runs before the engine is asked for)."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from search_api.app import create_app
from search_api.security import InsecureBindError, check_bind_policy, key_id, key_matches
from search_api.settings import APISettings, is_loopback


def test_key_matching_checks_every_key():
    keys = ["alpha-key", "beta-key-longer"]
    assert key_matches("beta-key-longer", keys)
    assert key_matches("alpha-key", keys)
    assert not key_matches("alpha-ke", keys)
    assert not key_matches("", keys)
    assert not key_matches("x", [])
    assert key_id("alpha-key") != key_id("beta-key-longer") and len(key_id("alpha-key")) == 8


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("::1", True), ("localhost", True), ("127.0.0.5", True),
                                       ("0.0.0.0", False), ("::", False), ("192.168.1.4", False), ("example.org", False)])
def test_loopback_detection(host, loop):
    assert is_loopback(host) is loop


def test_no_key_refused_off_loopback(caplog):
    with pytest.raises(InsecureBindError):
        check_bind_policy("0.0.0.0", [])
    with pytest.raises(InsecureBindError):
        create_app(APISettings(host="0.0.0.0", api_keys=""))
    check_bind_policy("0.0.0.0", ["k"])  # with a key any address is allowed
    with caplog.at_level(logging.WARNING, logger="cxr.api"):
        create_app(APISettings(host="127.0.0.1", api_keys=""))
    assert any("no API key" in r.getMessage() for r in caplog.records)


def test_keys_file_and_list(tmp_path):
    f = tmp_path / "keys.txt"
    f.write_text("# team keys\nfile-key-1\n\nfile-key-2  # laptop\n")
    s = APISettings(api_keys="env-key", api_keys_file=f)
    assert s.resolved_keys() == ["env-key", "file-key-1", "file-key-2"]


def test_v1_requires_key_401_403():
    app = create_app(APISettings(api_keys="right-key,other-key", index_dir=None))
    with TestClient(app) as client:
        r = client.get("/v1/stats")
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = client.get("/v1/stats", headers={"X-API-Key": "wrong"})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        r = client.post("/v1/search", headers={"X-API-Key": "wrong"}, files={"file": ("a.png", b"x")})
        assert r.status_code == 403
        # a right key passes auth and meets the missing index: 503, not 401/403
        r = client.get("/v1/stats", headers={"X-API-Key": "other-key"})
        assert r.status_code == 503 and r.json()["error"] == "index_state"
        h = client.get("/health")  # open
        assert h.status_code == 200 and h.json()["index_loaded"] is False


def test_health_reason_hides_paths(tmp_path):
    secret = tmp_path / "hospital-x" / "patient-folder"
    app = create_app(APISettings(index_dir=secret))
    with TestClient(app) as client:
        body = client.get("/health").json()
    assert body["index_loaded"] is False
    assert body["reason"] and "hospital-x" not in body["reason"] and str(tmp_path) not in body["reason"]


def test_openapi_documents_key_and_endpoints():
    app = create_app(APISettings(api_keys="k"))
    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
    assert "X-API-Key" in str(schema["components"]["securitySchemes"])
    for path in ("/health", "/v1/stats", "/v1/search", "/v1/classify", "/v1/embed", "/v1/cases/{case_id}",
                 "/v1/cases/{case_id}/image", "/v1/cases/{case_id}/similar"):
        assert path in schema["paths"], path
    body = schema["paths"]["/v1/search"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert "file" in body["properties"] and "k" in body["properties"]
    assert "examples" in str(schema["components"]["schemas"]["SearchResponse"])


def test_open_api_serves_only_local_clients():
    """No key configured: /v1 answers loopback clients, even if uvicorn was bound to 0.0.0.0 by hand."""
    app = create_app(APISettings(api_keys=""))
    with TestClient(app, client=("10.1.2.3", 40000)) as remote:
        r = remote.get("/v1/stats")
        assert r.status_code == 403 and "local" in r.json()["detail"]
        assert remote.get("/health").status_code == 200
    with TestClient(app, client=("127.0.0.1", 40000)) as local:
        assert local.get("/v1/stats").status_code == 503  # past auth; no index configured
    with TestClient(create_app(APISettings(api_keys="k")), client=("10.1.2.3", 40000)) as keyed:
        assert keyed.get("/v1/stats", headers={"X-API-Key": "k"}).status_code == 503
