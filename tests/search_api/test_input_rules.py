"""Input rules shared by every route, and the hardening found by trying the API as an attacker would.

Case ids beyond SQLite's integer range, one rule for ``sex`` and the other enums, a schema
that states the real limits, short reason codes on /health, no trailing-slash redirect, and
an idle-body timeout checked over a raw socket against a real uvicorn server.
"""

from __future__ import annotations

import re
import shutil
import socket
import time

import pytest

from tests.search_api.conftest import API_KEY, as_file

HUGE_IDS = [2**63, 2**63 + 1, 2**64, 10**30]


@pytest.mark.parametrize("case_id", HUGE_IDS)
@pytest.mark.parametrize("suffix", ["", "/image", "/similar"])
def test_case_id_beyond_int64_is_4xx_not_500(client, case_id, suffix):
    r = client.get(f"/v1/cases/{case_id}{suffix}")
    assert r.status_code in (404, 422), r.text
    assert r.json()["error"] in ("not_found", "invalid_request")


def test_largest_int64_id_is_a_plain_404(client):
    r = client.get(f"/v1/cases/{2**63 - 1}")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_keep_alive_connection_survives_a_huge_id(live_server):
    """The connection is not reset: the same client goes on with a normal request."""
    import httpx

    url = live_server(api_keys=API_KEY)
    with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=30) as c:
        assert c.get(f"/v1/cases/{2**63}").status_code in (404, 422)
        assert c.get("/v1/cases/1").status_code == 200


BAD_SEX = ["male", "m", "f", "M' OR 1=1 --", "X", "MF"]


@pytest.mark.parametrize("value", BAD_SEX)
def test_one_rule_for_sex_on_every_route(client, tiny_index, value):
    img = tiny_index.image()
    answers = {
        "search form": client.post("/v1/search", files=as_file(img), data={"sex": value, "k": "2"}),
        "search query": client.post("/v1/search", params={"sex": value}, content=img,
                                    headers={"Content-Type": "image/png"}),
        "classify form": client.post("/v1/classify", files=as_file(img), data={"sex": value}),
        "similar": client.get("/v1/cases/1/similar", params={"sex": value}),
    }
    for route, r in answers.items():
        assert r.status_code == 422, (route, r.text)
        assert r.json()["error"] == "invalid_request" and "sex" in r.json()["detail"], route


def test_documented_sex_values_are_accepted_everywhere(client, tiny_index):
    img = tiny_index.image()
    for value in ("M", "F"):
        r = client.post("/v1/search", files=as_file(img), data={"sex": value, "k": "3", "attention": "false"})
        assert r.status_code == 200 and all(h["case"]["sex"] == value for h in r.json()["hits"])
        assert client.post("/v1/classify", files=as_file(img), data={"sex": value}).status_code == 200
        r = client.get("/v1/cases/1/similar", params={"sex": value, "k": 3})
        assert r.status_code == 200 and all(h["case"]["sex"] == value for h in r.json()["hits"])


@pytest.mark.parametrize("params", [{"same_patient": "EXCLUDE"}, {"attention": "yes"}, {"attention": "1"},
                                    {"age_min": "nan"}, {"age_max": "inf"}, {"view": ["PA"] * 17}])
def test_other_enums_and_flags_follow_one_rule(client, tiny_index, params):
    form = client.post("/v1/search", files=as_file(tiny_index.image()), data=params)
    similar = client.get("/v1/cases/1/similar", params=params)
    assert form.status_code == similar.status_code == 422, (form.text, similar.text)


def test_schema_states_the_limits_of_this_server(make_client):
    c = make_client(api_keys=API_KEY, max_k=37, max_thumb_size=300, max_upload_bytes=123456)
    schema = c.get("/openapi.json").json()
    paths = schema["paths"]

    def param(path: str, name: str) -> dict:
        (p,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == name]
        return p["schema"]

    def maximum(s: dict) -> int:
        return max(sub.get("maximum", -1) for sub in s.get("anyOf", [s]))

    assert maximum(param("/v1/cases/{case_id}/image", "size")) == 300
    assert maximum(param("/v1/cases/{case_id}/similar", "k")) == 37
    assert param("/v1/cases/{case_id}", "case_id")["maximum"] == 2**63 - 1
    sex = param("/v1/cases/{case_id}/similar", "sex")
    assert {"M", "F"} == {v for sub in sex.get("anyOf", [sex]) for v in sub.get("enum", [])}
    for op in ("/v1/search", "/v1/classify", "/v1/embed"):
        body = paths[op]["post"]["requestBody"]
        form = body["content"]["multipart/form-data"]["schema"]
        assert form["properties"]["file"]["maxLength"] == 123456
        assert "PNG, JPEG or DICOM" in form["properties"]["file"]["description"]
        assert "at most 64 parts" in body["description"]
        assert body["content"]["image/png"]["schema"]["maxLength"] == 123456
        if "k" in form["properties"]:
            assert form["properties"]["k"]["maximum"] == 37
            assert form["properties"]["sex"]["enum"] == ["M", "F"]
            assert "age_max" in form["properties"]["age_min"]["description"]


def test_health_gives_a_reason_code_not_faiss_internals(tiny_index, tmp_path):
    from fastapi.testclient import TestClient

    from search_api.app import create_app
    from search_api.settings import APISettings

    if tiny_index.backend != "faiss":
        pytest.skip("a damaged FAISS file: the Milvus backend keeps its vectors in Milvus, not in the folder")
    broken = tmp_path / "broken-index"
    shutil.copytree(tiny_index.index_dir, broken)
    faiss_files = list(broken.rglob("*.faiss"))
    assert faiss_files
    for f in faiss_files:
        f.write_bytes(b"not a faiss index" * 64)
    app = create_app(APISettings(index_dir=broken, model_path=tiny_index.checkpoint, api_keys=API_KEY))
    with TestClient(app) as c:
        health = c.get("/health").json()
        stats = c.get("/v1/stats", headers={"X-API-Key": API_KEY})
    assert health["index_loaded"] is False
    assert re.fullmatch(r"[a-z_]{3,40}", health["reason"]), health["reason"]
    assert stats.status_code == 503 and health["reason"] in stats.json()["detail"]
    for text in (health["reason"], stats.json()["detail"]):
        assert "faiss" not in text.lower() and ".cpp" not in text and str(tmp_path) not in text


def test_trailing_slash_is_not_redirected(make_client):
    c = make_client(api_keys=API_KEY)
    for headers in ({}, {"Host": "evil.example"}, {"X-API-Key": API_KEY}):
        r = c.get("/v1/cases/1/", headers=headers, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers, (headers, r.status_code)
        assert r.json()["error"] == "not_found"


def _raw_request(port: int, head: bytes, body: bytes) -> tuple[bytes, float]:
    """Send a request whose body stops early; return what the server answers and when."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + body)
        start, data = time.monotonic(), b""
        while True:
            chunk = s.recv(65536)
            if not chunk:  # the server closed the connection
                break
            data += chunk
        return data, time.monotonic() - start


@pytest.mark.parametrize("multipart", [True, False])
def test_stalled_upload_gets_408_and_the_socket_closed(live_server, tiny_index, multipart):
    url = live_server(api_keys=API_KEY, body_timeout_s=1.0)
    port = int(url.rsplit(":", 1)[1])
    img = tiny_index.image()
    if multipart:
        body = (b"--bnd\r\nContent-Disposition: form-data; name=\"file\"; filename=\"q.png\"\r\n"
                b"Content-Type: image/png\r\n\r\n" + img)
        ctype = b"multipart/form-data; boundary=bnd"
    else:
        body, ctype = img, b"image/png"
    head = (b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: " + API_KEY.encode() +
            b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: " + str(len(body) + 5000).encode() + b"\r\n\r\n")
    data, waited = _raw_request(port, head, body[: len(body) // 2])
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b'"request_timeout"' in data
    assert waited < 25  # answered after the idle timeout, and the socket closed (recv returned b"")
