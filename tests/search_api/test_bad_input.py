"""Every bad input gets its documented status and a JSON error, never a 500."""

from __future__ import annotations

import pytest

from tests.search_api.conftest import as_file, dicom_bytes, png_declaring, truncated


def _err(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail"} and body["detail"]
    if code:
        assert body["error"] == code, body
    return body


@pytest.mark.parametrize("path", ["/v1/search", "/v1/classify", "/v1/embed"])
def test_bad_images_on_every_upload_endpoint(client, tiny_index, path):
    png = tiny_index.image()
    _err(client.post(path, files=as_file(b"")), 422, "invalid_request")
    _err(client.post(path, files=as_file(b"hello, this is plain text\n" * 10, "x.png", "image/png")), 415,
         "not_an_image")
    _err(client.post(path, files=as_file(truncated(png, 0.4))), 422, "truncated_image")
    _err(client.post(path, files=as_file(truncated(dicom_bytes(), 0.5), "x.dcm")), 422)
    _err(client.post(path, files=as_file(png_declaring(100_000, 100_000))), 413, "image_too_large")
    _err(client.post(path, data={"k": "3"}), 422, "invalid_request")  # no file part at all


def test_pdf_named_png_is_refused_by_content(client):
    _err(client.post("/v1/search", files=as_file(b"%PDF-1.4\n" + b"0" * 500, "scan.png", "image/png")), 415)


def test_type_decided_by_content_not_name(client, tiny_index):
    r = client.post("/v1/search", files=as_file(tiny_index.image(), "report.pdf", "application/pdf"))
    assert r.status_code == 200, r.text


def test_max_image_pixels_setting(make_client, tiny_index):
    c = make_client(max_image_pixels=60 * 60)  # the test images are 96x96
    _err(c.post("/v1/search", files=as_file(tiny_index.image())), 413, "image_too_large")


def test_oversize_body_413_with_and_without_content_length(make_client, tiny_index):
    c = make_client(max_upload_bytes=4000)
    big = tiny_index.image() + b"\0" * 80_000  # a valid PNG start, far over the cap
    assert len(big) > 4000 + 64 * 1024
    _err(c.post("/v1/search", files=as_file(big)), 413, "upload_too_large")

    def chunks():  # chunked transfer: no Content-Length to trust
        for i in range(0, len(big), 8192):
            yield big[i:i + 8192]

    _err(c.post("/v1/search", content=chunks(), headers={"Content-Type": "application/octet-stream"}), 413)
    # just over the file cap, inside the multipart slack: still refused while parsing
    _err(c.post("/v1/search", files=as_file(tiny_index.image() + b"\0" * 5000)), 413)


@pytest.mark.parametrize("data", [
    {"k": "0"}, {"k": "101"}, {"k": "ten"}, {"k": "-3"}, {"sex": "X"}, {"age_min": "-1"}, {"age_max": "500"},
    {"age_min": "60", "age_max": "20"}, {"same_patient": "maybe"}, {"attention": "perhaps"}, {"colour": "red"},
])
def test_bad_parameters_422(client, tiny_index, data):
    body = _err(client.post("/v1/search", files=as_file(tiny_index.image()), data=data), 422, "invalid_request")
    assert next(iter(data)) in body["detail"]


def test_k_limit_follows_settings(make_client, tiny_index):
    c = make_client(max_k=5)
    _err(c.post("/v1/classify", files=as_file(tiny_index.image()), data={"k": "6"}), 422)
    assert c.post("/v1/classify", files=as_file(tiny_index.image()), data={"k": "5"}).status_code == 200
    _err(c.get("/v1/cases/1/similar", params={"k": 6}), 422)


def test_unknown_case_404(client):
    for path in ("/v1/cases/99999", "/v1/cases/99999/image", "/v1/cases/99999/similar", "/v1/cases/0"):
        _err(client.get(path), 404)
    _err(client.get("/v1/cases/abc"), 422)
    _err(client.get("/v1/cases/-4"), 422)
    _err(client.get("/v1/cases/1/image", params={"size": 100_000}), 422)
    _err(client.get("/v1/cases/1/image", params={"size": 2}), 422)
    _err(client.get("/v1/cases/1/similar", params={"sex": "Q"}), 422)
    _err(client.get("/v1/nowhere"), 404, "not_found")


def test_path_traversal_never_reaches_files(client):
    for path in ("/v1/cases/..%2f..%2fetc%2fpasswd/image", "/v1/cases/%2e%2e/image", "/v1/cases/1/../../etc/passwd"):
        r = client.get(path)
        assert r.status_code in (404, 422) and b"root:" not in r.content


def test_malformed_multipart_400(client):
    r = client.post("/v1/search", content=b"--xyz\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--xyz--\r\n",
                    headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    _err(r, 400)
    r = client.post("/v1/search", content=b"abc", headers={"Content-Type": "multipart/form-data"})
    _err(r, 400)
    _err(client.post("/v1/search", content=b"{}", headers={"Content-Type": "application/json"}), 415)


def test_jpeg_declaring_huge_size_413(client, tiny_index):
    import struct

    import cv2
    import numpy as np

    arr = cv2.imdecode(np.frombuffer(tiny_index.image(), np.uint8), cv2.IMREAD_GRAYSCALE)
    jpg = bytearray(cv2.imencode(".jpg", arr)[1].tobytes())
    sof = jpg.find(b"\xff\xc0")
    assert sof > 0
    jpg[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # height, width in the frame header
    _err(client.post("/v1/search", files=as_file(bytes(jpg), "x.jpg")), 413, "image_too_large")


def test_same_patient_only_needs_known_patient(client):
    import cv2
    import numpy as np

    novel = cv2.imencode(".png", np.random.default_rng(5).integers(0, 255, (80, 80), dtype=np.uint8))[1].tobytes()
    _err(client.post("/v1/search", files=as_file(novel), data={"same_patient": "only"}), 422)


def test_true_bug_gives_generic_500_without_trace(make_client):
    from fastapi.testclient import TestClient

    c = make_client()

    @c.app.get("/v1/boom")
    def boom() -> None:
        raise RuntimeError("secret internal state /srv/data/patient.png")

    raw = TestClient(c.app, raise_server_exceptions=False)
    body = _err(raw.get("/v1/boom"), 500, "internal_error")
    assert "secret" not in body["detail"] and "Traceback" not in body["detail"]


def test_cors_off_by_default_and_on_when_configured(make_client):
    headers = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "POST"}
    closed = make_client().options("/v1/search", headers=headers)
    assert "access-control-allow-origin" not in closed.headers
    opened = make_client(cors_origins="https://viewer.example").options("/v1/search", headers=headers)
    assert opened.headers.get("access-control-allow-origin") == "https://viewer.example"
