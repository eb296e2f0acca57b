"""POST /v1/search/dicomweb and GET /v1/pacs/studies against the live Orthanc."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.pacs
KEY = "pacs-test-key"


@pytest.fixture(scope="module")
def api(pacs, pacs_index, engine):
    from fastapi.testclient import TestClient

    from search_api.app import create_app
    from search_api.settings import APISettings

    settings = APISettings(index_dir=pacs_index[1], api_keys=KEY, dicomweb_url=pacs.url, dicomweb_auth=pacs.auth)
    with TestClient(create_app(settings, engine=engine), client=("127.0.0.1", 50000)) as client:
        client.headers["X-API-Key"] = KEY
        yield client


def test_search_by_study_uid_equals_upload(api, pacs):
    film = pacs.films[3]
    by_study = api.post("/v1/search/dicomweb", json={"study_uid": film.study_uid, "k": 5, "attention": False})
    assert by_study.status_code == 200, by_study.text
    upload = api.post("/v1/search", files={"file": ("q.dcm", film.data)}, data={"k": "5", "attention": "false"})
    assert upload.status_code == 200
    assert [h["case"]["id"] for h in by_study.json()["hits"]] == [h["case"]["id"] for h in upload.json()["hits"]]
    body = by_study.text
    assert body.count("u_") >= 1 and film.study_uid not in body and film.sop_uid not in body
    assert film.patient_id not in body and pacs.server.rest_url not in body


def test_recent_studies_list_and_search_by_handle(api, pacs):
    r = api.get("/v1/pacs/studies", params={"limit": 5})
    assert r.status_code == 200, r.text
    studies = r.json()["studies"]
    assert len(studies) == 5 and [s["rank"] for s in studies] == [1, 2, 3, 4, 5]
    newest = pacs.films[-1]  # the generated films have the latest study dates
    assert studies[0]["sex"] == newest.sex and studies[0]["age"] == newest.age
    for f in pacs.films:
        assert f.study_uid not in r.text and f.patient_id not in r.text
    by_handle = api.post("/v1/search/dicomweb", json={"study": studies[0]["handle"], "k": 4, "attention": False})
    by_uid = api.post("/v1/search/dicomweb", json={"study_uid": newest.study_uid, "k": 4, "attention": False})
    assert by_handle.status_code == 200
    assert by_handle.json()["hits"] == by_uid.json()["hits"]


def test_bad_requests_are_clear(api, pacs):
    assert api.post("/v1/search/dicomweb", json={"k": 3}).status_code == 422
    assert api.post("/v1/search/dicomweb", json={"study_uid": "1.2; DROP"}).status_code == 422
    r = api.post("/v1/search/dicomweb", json={"study_uid": "1.2.3.4.5.6.7"})
    assert r.status_code == 404 and r.json()["error"] == "pacs_not_found" and "1.2.3.4.5.6.7" not in r.text
    r = api.post("/v1/search/dicomweb", json={"url": "http://elsewhere", "study_uid": "1.2.3"})
    assert r.status_code == 422  # the PACS is the server's, never the client's
    no_key = api.post("/v1/search/dicomweb", json={"study_uid": "1.2.3"}, headers={"X-API-Key": ""})
    assert no_key.status_code == 401
