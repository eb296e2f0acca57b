"""The query's view and facts, same-family search, the vote hierarchy and the paged case listing over HTTP."""

from __future__ import annotations

import io

from tests.search_api.conftest import API_KEY, as_file, dicom_bytes


def _dicom(view: str) -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(patient_id="MRN-VIEW-1")))
    ds.ViewPosition, ds.PatientAge, ds.PatientSex, ds.BodyPartExamined = view, "061Y", "F", "CHEST"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_dicom_facts_and_view_are_returned_and_used(client):
    body = client.post("/v1/search", files=as_file(_dicom("PA"), "scan.dcm"), data={"k": "5"}).json()
    assert body["query_facts"] == {"age": 61.0, "sex": "F", "view": "PA", "body_part": "CHEST", "modality": "CR"}
    assert body["query_view"]["source"] == "dicom" and body["query_view"]["family"] == "frontal"
    assert body["view_family_used"] == "frontal" and body["count"] == 5
    assert body["query_case_id"] is None
    # a lateral film: the index holds only frontal films, so no neighbour unless widened
    lat = client.post("/v1/search", files=as_file(_dicom("LL"), "scan.dcm"), data={"k": "5"}).json()
    assert lat["query_view"]["family"] == "lateral" and lat["count"] == 0
    wide = client.post("/v1/search", files=as_file(_dicom("LL"), "scan.dcm"),
                       data={"k": "5", "view_scope": "any"}).json()
    assert wide["count"] == 5 and wide["view_family_used"] is None
    given = client.post("/v1/search", files=as_file(_dicom("LL"), "scan.dcm"),
                        data={"k": "5", "query_view": "AP"}).json()
    assert given["query_view"] == {"view": "AP", "family": "frontal", "source": "given", "lateral_score": None}
    bad = client.post("/v1/search", files=as_file(_dicom("PA")), data={"view_scope": "sideways"})
    assert bad.status_code == 422


def test_identical_upload_says_which_case_it_is_and_counts_patients(client, tiny_index):
    body = client.post("/v1/search", files=as_file(tiny_index.image("gen_05_1.png")), data={"k": "8"}).json()
    case_id = body["query_case_id"]
    assert isinstance(case_id, int)
    assert client.get(f"/v1/cases/{case_id}").json()["sha256"]  # a real case
    assert all(h["case"]["id"] != case_id for h in body["hits"])
    surv = body["prognosis"]["survival"]
    patients = {h["case"]["patient"] for h in body["hits"] if h["case"]["prognosis"].get("survival") is not None}
    assert surv["patients_known"] == len(patients) <= surv["known"]
    rows = body["vote_detail"]
    assert {r["finding"] for r in rows} == set(body["vote"])
    for r in rows:
        having = [h for h in body["hits"] if r["finding"] in h["case"]["findings"]]
        assert r["neighbours"] == len(having) and r["patients"] == len({h["case"]["patient"] for h in having})
        assert r["calibrated"] is None
    covid = next(r for r in rows if r["finding"] == "COVID-19")
    assert covid["parent"] == "Viral Pneumonia" and covid["depth"] == 2


def test_similar_takes_the_view_scope(client):
    body = client.get("/v1/cases/1/similar", params={"k": 3}).json()
    assert body["query_view"]["source"] == "index" and body["view_family_used"] == "frontal"
    assert client.get("/v1/cases/1/similar", params={"k": 3, "view_scope": "any"}).json()["view_family_used"] is None


def test_case_listing_pages_and_filters_behind_the_key(client):
    first = client.get("/v1/cases", params={"limit": 5}).json()
    assert first["total"] == 24 and [c["id"] for c in first["cases"]] == [1, 2, 3, 4, 5]
    assert all("image_path" not in c and c["image_url"].endswith("/image") for c in first["cases"])
    nxt = client.get("/v1/cases", params={"limit": 5, "offset": 20}).json()
    assert [c["id"] for c in nxt["cases"]] == [21, 22, 23, 24]
    covid = client.get("/v1/cases", params=[("finding", "COVID-19"), ("view", "PA")]).json()
    assert covid["total"] > 0 and all("COVID-19" in c["findings"] and c["view"] == "PA" for c in covid["cases"])
    assert client.get("/v1/cases", params={"view_family": "lateral"}).json()["total"] == 0
    assert client.get("/v1/cases", params={"age_min": 50, "age_max": 40}).status_code == 422
    assert client.get("/v1/cases", params={"limit": 10_000}).status_code == 422
    client.headers.pop("X-API-Key")
    assert client.get("/v1/cases").status_code == 401
    client.headers["X-API-Key"] = API_KEY


def test_classify_takes_the_view_scope(client):
    lateral = _dicom("LL")
    assert client.post("/v1/classify", files=as_file(lateral), data={"k": "3"}).json()["vote"] == {}
    assert client.post("/v1/classify", files=as_file(lateral), data={"k": "3", "view_scope": "any"}).json()["vote"]
