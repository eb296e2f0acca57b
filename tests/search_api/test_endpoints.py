"""Every endpoint against a real tiny index (FAISS + SQLite + tiny model) through TestClient."""

from __future__ import annotations

import base64
import hashlib
import json
import logging

import cv2
import numpy as np

from tests.search_api.conftest import API_KEY, as_file, dicom_bytes


def _decode_png(b64: str) -> np.ndarray:
    raw = base64.b64decode(b64)
    assert raw.startswith(b"\x89PNG")
    return cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)


def test_health_reports_loaded_index(client):
    client.headers.pop("X-API-Key")
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["index_loaded"] is True and body["reason"] is None


def test_stats(client, tiny_index):
    body = client.get("/v1/stats").json()
    assert body["cases"] == 24
    assert body["embedding_dim"] == 32
    assert body["model"]["name"] == "cxr_test_tiny"
    assert tiny_index.engine.manifest.model_sha256.startswith(body["model"]["sha256"])
    assert body["sources"] == {"covid-chestxray": 24}
    assert body["findings"]["No Finding"] == 8
    # `engine` is SearchEngine.stats() itself (the EngineStats model), nothing guessed or renamed
    from index.schemas import EngineStats

    assert body["engine"] == tiny_index.engine.stats().model_dump(mode="json")
    assert set(body["engine"]) == set(EngineStats.model_fields)


def test_search_returns_hits_vote_prognosis_and_pngs(client, tiny_index):
    r = client.post("/v1/search", files=as_file(tiny_index.image("gen_05_1.png")), data={"k": "5"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["k"] == 5 and body["count"] == len(body["hits"]) == 5
    sims = [h["similarity"] for h in body["hits"]]
    assert sims == sorted(sims, reverse=True) and [h["rank"] for h in body["hits"]] == [1, 2, 3, 4, 5]
    for h in body["hits"]:
        case = h["case"]
        assert case["image_url"] == f"/v1/cases/{case['id']}/image"
        assert "image_path" not in case and case["findings"]
    assert body["vote"] and all(0.0 <= v <= 1.0 for v in body["vote"].values())
    surv = body["prognosis"]["survival"]
    assert surv["known"] == 5 and 0 <= surv["positive"] <= 5
    q = _decode_png(body["query_png"])
    att = _decode_png(body["attention_png"])
    assert q.shape == (64, 64)
    assert att.shape == (64, 64, 4) and att[..., 3].max() == 255 and att[..., 3].min() < 255  # alpha = heat
    assert body["model_sha256"] == tiny_index.engine.manifest.model_sha256[:12]


def test_search_without_attention_and_raw_body(client, tiny_index):
    r = client.post("/v1/search?k=3&attention=false", content=tiny_index.image(),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 3 and body["attention_png"] is None


def test_search_filters_apply(client, tiny_index):
    img = tiny_index.image("gen_04_0.png")
    r = client.post("/v1/search", files=as_file(img), data={"k": "20", "view": "AP", "sex": "M"})
    body = r.json()
    assert r.status_code == 200 and body["hits"]
    assert all(h["case"]["view"] == "AP" and h["case"]["sex"] == "M" for h in body["hits"])
    r = client.post("/v1/search", files=as_file(img),
                    data={"k": "20", "finding": ["No Finding"], "age_min": "40", "age_max": "60"})
    body = r.json()
    assert body["hits"] and all("No Finding" in h["case"]["findings"] and 40 <= h["case"]["age"] <= 60
                                for h in body["hits"])
    r = client.post("/v1/search", files=as_file(img), data={"source": "elsewhere,nowhere"})
    assert r.status_code == 200 and r.json()["count"] == 0


def test_same_patient_option(client, tiny_index):
    # gen_03_0 is indexed: the engine recognises it, so its patient is known.
    img = tiny_index.image("gen_03_0.png")
    sha = hashlib.sha256(img).hexdigest()
    own = next(c for c in (tiny_index.engine.get_case(i) for i in range(1, 25)) if c.sha256 == sha)
    hits = lambda data: [h["case"] for h in client.post("/v1/search", files=as_file(img), data=data).json()["hits"]]
    excluded = hits({"k": "23"})
    assert excluded and all(c["patient"] != own.patient for c in excluded)
    included = hits({"k": "23", "same_patient": "include"})
    assert any(c["patient"] == own.patient for c in included)
    only = hits({"k": "5", "same_patient": "only"})
    assert only and all(c["patient"] == own.patient for c in only) and all(c["id"] != own.id for c in only)


def test_search_dicom_query_keeps_no_identifier(client):
    r = client.post("/v1/search", files=as_file(dicom_bytes(), "scan.dcm"), data={"k": "3"})
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 3
    assert "MRN-DICOM-1" not in r.text and "Doe" not in r.text


def test_case_endpoints(client):
    case = client.get("/v1/cases/3").json()
    assert case["id"] == 3 and case["source"] == "covid-chestxray" and case["patient"].startswith("p_")
    img = client.get(case["image_url"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    arr = cv2.imdecode(np.frombuffer(img.content, np.uint8), cv2.IMREAD_UNCHANGED)
    assert arr.shape == (64, 64)
    thumb = client.get("/v1/cases/3/image", params={"size": 32})
    assert cv2.imdecode(np.frombuffer(thumb.content, np.uint8), cv2.IMREAD_UNCHANGED).shape == (32, 32)


def test_similar_excludes_case_and_patient_by_default(client):
    own = client.get("/v1/cases/5").json()
    body = client.get("/v1/cases/5/similar", params={"k": 6}).json()
    assert body["count"] == 6 and body["attention_png"] is None
    assert all(h["case"]["id"] != 5 and h["case"]["patient"] != own["patient"] for h in body["hits"])
    body = client.get("/v1/cases/5/similar", params=[("k", "23"), ("same_patient", "include"), ("view", "AP"),
                                                      ("view", "PA")]).json()
    assert any(h["case"]["patient"] == own["patient"] for h in body["hits"])
    assert all(h["case"]["id"] != 5 for h in body["hits"])
    with_att = client.get("/v1/cases/5/similar", params={"k": 2, "attention": "true"}).json()
    assert with_att["attention_png"] and with_att["query_png"]


def test_classify_matches_search_vote(client, tiny_index):
    img = tiny_index.image("gen_07_1.png")
    vote = client.post("/v1/classify", files=as_file(img), data={"k": "7"}).json()
    search = client.post("/v1/search", files=as_file(img), data={"k": "7", "attention": "false"}).json()
    assert vote["k"] == 7 and vote["vote"] == search["vote"] and vote["vote"]


def test_embed_is_unit_vector_matching_engine(client, tiny_index):
    img = tiny_index.image("gen_02_0.png")
    body = client.post("/v1/embed", files=as_file(img)).json()
    vec = np.array(body["embedding"])
    assert body["dim"] == 32 == len(vec)
    assert abs(np.linalg.norm(vec) - 1.0) < 1e-4
    assert np.allclose(vec, tiny_index.engine.embed(img), atol=1e-5)


def test_audit_line_per_request_without_identifiers(client, tiny_index, caplog):
    with caplog.at_level(logging.INFO, logger="cxr.audit"):
        r = client.post("/v1/search", files=as_file(tiny_index.image(), "MRN-900000-name.png"), data={"k": "4"})
        client.get("/v1/cases/2")
        client.get("/v1/cases/2/image", headers={"X-API-Key": "nope"})
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "cxr.audit"]
    assert len(lines) == 3
    search, case, denied = lines
    assert search["endpoint"] == "/v1/search" and search["status"] == 200 and search["results"] == r.json()["count"]
    assert search["key_id"] == hashlib.sha256(API_KEY.encode()).hexdigest()[:8]
    assert search["latency_ms"] > 0 and search["time"].endswith("Z") and search["method"] == "POST"
    assert case["endpoint"] == "/v1/cases/{id}" and case["results"] == 1
    assert denied["status"] == 403 and denied["key_id"] is None
    text = " ".join(rec.getMessage() for rec in caplog.records)
    assert "MRN" not in text and "name.png" not in text and API_KEY not in text


def test_no_raw_patient_id_in_any_response(client, tiny_index):
    texts = [client.get(f"/v1/cases/{i}").text for i in range(1, 25)]
    texts.append(client.post("/v1/search", files=as_file(tiny_index.image()), data={"k": "23"}).text)
    texts.append(client.get("/v1/stats").text)
    assert all("MRN-" not in t and str(tiny_index.corpus) not in t and "gen_0" not in t for t in texts)


def test_open_api_without_keys_on_loopback(make_client, tiny_index):
    c = make_client(api_keys="")
    assert c.get("/v1/stats").status_code == 200
    assert c.post("/v1/search", files=as_file(tiny_index.image())).status_code == 200
