"""A real small index for the API tests, built once per session.

Generated PNGs in the ieee8023 covid-chestxray layout (``metadata.csv`` +
``images/``), so cases carry view, sex, age, findings and prognosis; embedded
by an untrained ``cxr_test_tiny`` checkpoint with the index engineer's builder.
The raw patient ids look like hospital numbers (``MRN-...``) so tests can
check that none ever leaves the API.
"""

from __future__ import annotations

import csv
import io
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

SIZE = 64
N_PATIENTS = 12
IMAGES_PER_PATIENT = 2
FINDINGS = ["COVID-19", "No Finding", "Streptococcus"]
API_KEY = "test-api-key-0123"


def radiograph(rng: np.random.Generator, patient: int, side: int = 96) -> np.ndarray:
    """Two bright 'lungs' plus patient-specific blobs and noise, uint8."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    img = 0.2 + 0.5 * np.exp(-(((xx - 0.3) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2))
    img += 0.5 * np.exp(-(((xx - 0.7) / 0.15) ** 2 + ((yy - 0.5) / 0.3) ** 2))
    prng = np.random.default_rng(1000 + patient)
    for _ in range(3):
        cy, cx, s = prng.uniform(0.2, 0.8, 2).tolist() + [prng.uniform(0.05, 0.2)]
        img += prng.uniform(0.3, 0.8) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    img += 0.04 * rng.normal(size=img.shape)
    img = (img - img.min()) / (img.max() - img.min())
    return (255 * img).astype(np.uint8)


def png_bytes(arr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", arr)
    assert ok
    return buf.tobytes()


def make_covid_like(root: Path) -> Path:
    """metadata.csv + images/ with N_PATIENTS x IMAGES_PER_PATIENT generated PNGs."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for p in range(N_PATIENTS):
        for j in range(IMAGES_PER_PATIENT):
            name = f"gen_{p:02d}_{j}.png"
            (images / name).write_bytes(png_bytes(radiograph(rng, p)))
            rows.append({
                "patientid": f"MRN-{900000 + p}", "offset": str(j * 3), "sex": "M" if p % 2 else "F",
                "age": str(30 + 3 * p), "finding": FINDINGS[p % 3],
                "survival": "Y" if p % 4 else "N", "intubated": "N" if p % 3 else "Y", "went_icu": "",
                "view": "PA" if j == 0 else "AP", "modality": "X-ray", "folder": "images", "filename": name,
                "license": "CC BY 4.0",
            })
    with open(root / "metadata.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TinyIndex:
    index_dir: Path
    corpus: Path
    checkpoint: Path
    engine: Any
    backend: str = "faiss"

    def image(self, name: str = "gen_00_0.png") -> bytes:
        return (self.corpus / "images" / name).read_bytes()


@pytest.fixture(scope="session", params=["faiss", "milvus"])
def tiny_index(request, tmp_path_factory) -> Iterator[TinyIndex]:
    """Build the index once per backend (FAISS, Milvus Lite); share one opened SearchEngine between the apps.

    Every API test runs over both backends: the service must not notice where the vectors live.
    """
    if request.param == "milvus":
        pytest.importorskip("pymilvus", reason="pymilvus/milvus-lite not installed: pip install 'cxr-search[distributed]'")
    import torch

    from embed.models import create_model, save_checkpoint
    from embed.standardize import StandardizeConfig
    from index.builder import build_index
    from index.engine import SearchEngine

    tmp = tmp_path_factory.mktemp("api_index")
    corpus = make_covid_like(tmp / "covid-like")
    torch.manual_seed(0)
    model = create_model("cxr_test_tiny").eval()
    torch.nn.init.normal_(model.pool.score.weight, std=1.0)  # a non-uniform attention map
    ckpt = tmp / "tiny.pt"
    save_checkpoint(ckpt, model, std_cfg=StandardizeConfig(size=SIZE), labels=FINDINGS)
    out = tmp / "index"
    build_index([f"covid-chestxray:{corpus}"], out, model=ckpt, workers=0, progress=False, backend=request.param)
    engine = SearchEngine.open(out, model_path=ckpt)
    try:
        yield TinyIndex(out, corpus, ckpt, engine, request.param)
    finally:
        engine.close()


@pytest.fixture()
def make_client(tiny_index):
    """Factory of TestClients over the shared engine: make_client(api_keys="k", max_upload_bytes=...)."""
    from fastapi.testclient import TestClient

    from search_api.app import create_app
    from search_api.settings import APISettings

    clients = []

    def make(**overrides: Any) -> TestClient:
        settings = APISettings(index_dir=tiny_index.index_dir, **overrides)
        client = TestClient(create_app(settings, engine=tiny_index.engine), client=("127.0.0.1", 50000))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture()
def client(make_client):
    """A client with one required key, sent by default."""
    c = make_client(api_keys=API_KEY)
    c.headers["X-API-Key"] = API_KEY
    return c


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(1, int(len(data) * keep))]


def as_file(data: bytes, name: str = "q.png", ctype: str = "application/octet-stream") -> dict:
    return {"file": (name, io.BytesIO(data), ctype)}


def dicom_bytes(rows: int = 64, cols: int = 64, patient_id: str = "MRN-DICOM-1") -> bytes:
    """A small uncompressed MONOCHROME2 DICOM with identifying tags (which must never come back)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.PatientName = "Doe^Jane"
    ds.PatientID = patient_id
    ds.Modality = "CR"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    arr = radiograph(np.random.default_rng(7), 3, side=rows).astype(np.uint16) * 16
    ds.PixelData = arr[:, :cols].tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height (a decompression-bomb header) with a tiny IDAT."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


#: Batched and single forward passes differ by float32 rounding (oneDNN picks kernels by batch
#: size: at most ~1e-7 on the embeddings); answers are compared to well above that.
TOL = 1e-5


def same_answer(a: dict, b: dict) -> None:
    """Same hits in the same order and the same vote, up to float32 rounding (and exact ties)."""
    assert a["count"] == b["count"]
    sims_a = [h["similarity"] for h in a["hits"]]
    sims_b = [h["similarity"] for h in b["hits"]]
    assert sims_a == pytest.approx(sims_b, abs=TOL)
    by_id_a = {h["case"]["id"]: h["similarity"] for h in a["hits"]}
    by_id_b = {h["case"]["id"]: h["similarity"] for h in b["hits"]}
    for ha, hb in zip(a["hits"], b["hits"]):
        if ha["case"]["id"] != hb["case"]["id"]:  # only a tie may swap two hits
            assert abs(ha["similarity"] - hb["similarity"]) < TOL
    for cid in set(by_id_a) ^ set(by_id_b):  # only a tie at the k-th place may swap a hit out
        assert abs(by_id_a.get(cid, by_id_b.get(cid)) - sims_a[-1]) < TOL
    assert a["vote"].keys() == b["vote"].keys()
    for name in a["vote"]:
        assert a["vote"][name] == pytest.approx(b["vote"][name], abs=TOL)
    assert a["prognosis"] == b["prognosis"]


@pytest.fixture()
def live_server(tiny_index):
    """Factory of real uvicorn servers (in a thread, on a free loopback port) over the shared engine.

    ``live_server(api_keys=..., body_timeout_s=...)`` returns the base URL; every server stops at teardown.
    """
    import threading
    import time

    import httpx
    import uvicorn

    from search_api.app import create_app
    from search_api.settings import APISettings

    servers = []

    def start(**overrides: Any) -> str:
        port = free_port()
        settings = APISettings(index_dir=tiny_index.index_dir, host="127.0.0.1", port=port, **overrides)
        config = uvicorn.Config(create_app(settings, engine=tiny_index.engine), host="127.0.0.1", port=port,
                                log_level="warning", access_log=False, server_header=False)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
        thread.start()
        servers.append((server, thread))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
            time.sleep(0.05)
        assert httpx.get(f"{url}/health", timeout=5).json()["index_loaded"]
        return url

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(15)
